//! # oms-store
//!
//! Storage adapters implementing `oms-core`'s store traits:
//!
//! - [`SqliteStore`]: the embedded default — a file path or `:memory:`, WAL journal, `BEGIN
//!   IMMEDIATE` for every write transaction, a busy timeout, migrations applied on open.
//! - [`PostgresStore`]: seed 002's schema plus the outbox and idempotency keys, a small
//!   connection pool, bounded retries of serialization failures and deadlocks.
//!
//! Both write an order, its line rows, its new audit rows and its outbox events in one
//! transaction, so a crash loses none of them and never leaves half an order. On SQLite a host
//! may also group many operations into one commit ([`SqliteStore::begin_batch`] /
//! [`SqliteStore::commit_batch`], through `OrderStore::begin_batch`): each operation is still
//! atomic on its own, so a refused one rolls back alone (order writes are checked before
//! anything is kept, inventory operations run on the batch's in-memory rows; each changed row
//! is written once, at the commit), and the group becomes durable together — a crash before
//! the commit loses the whole group and never part of an operation. Batches can be pipelined
//! ([`SqliteStore::pipeline_batches`]): a batch's commit runs on a thread of its own while the
//! next batch runs in memory on top of it, reading the rows it lacks through a second,
//! read-only connection, and the commit's outcome is reported by the next `commit_batch` (or
//! [`SqliteStore::wait_for_commit`]).
//! Threads sharing one [`SqliteStore`] can instead turn on group commit
//! ([`SqliteStore::enable_group_commit`]): every write returns only once it is durable, and
//! writes that arrive together share one commit; or share one batch, which any of them cuts
//! with [`SqliteStore::rotate_batch`]. [`PostgresStore`] has batches too (see
//! [`postgres_batch`]): operations run on memory and each batch commits in one transaction of
//! a few statements, checked against what other connections wrote meanwhile. Every statement
//! binds its parameters; no SQL is ever built from input.
//!
//! Each order row keeps the whole aggregate in its `document` column, the copy every read
//! returns. PostgreSQL stores it as JSON text; SQLite as a blob in a compact binary encoding
//! (postcard, LZ4-compressed: about a quarter of the JSON's size and about three times as fast
//! to write and to read), and still reads the JSON text and LZ4-compressed JSON that earlier
//! versions wrote. The columns beside it (number, customer, status, currency, total,
//! timestamps; the addresses as JSON text) and the line and audit rows stay plain SQL values.
//!
//! [`SqliteInventory`] and [`PostgresInventory`] implement `oms_core::inventory::InventoryStore`
//! on the same databases (and the same migration lists). The operations are written once, over
//! a small row interface each backend provides inside its transaction, and follow
//! `MemoryInventory` step for step, so all three stores answer a call sequence identically.
//! A reserve holds each (sku, warehouse) with one conditional
//! `UPDATE … WHERE on_hand - reserved - allocated >= q`, in key order, inside one transaction
//! covering every line.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod children;
mod codec;
mod group;
mod inventory;
mod overlay;
mod parallel;
mod pipeline;
pub mod postgres;
pub mod postgres_batch;
pub mod postgres_inventory;
pub mod sqlite;
pub mod sqlite_inventory;

pub use crate::postgres::PostgresStore;
pub use crate::postgres_inventory::PostgresInventory;
pub use crate::sqlite::SqliteStore;
pub use crate::sqlite_inventory::SqliteInventory;
