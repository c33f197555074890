//! # oms-core
//!
//! The pure, deterministic domain core of oms, an embeddable order-management library.
//!
//! Nothing in this crate reads a clock, draws a random number, performs I/O or starts a
//! thread: time comes from a [`time::Clock`], ids from a [`time::IdGenerator`], and storage,
//! gateways and notifications through traits. The same inputs always give the same outputs.
//!
//! Money is exact ([`money::Money`]: `rust_decimal` at the currency's minor unit, checked
//! arithmetic, largest-remainder splits) and every bad input returns an [`error::OmsError`]
//! with a stable code, never a panic.
//!
//! An order's strings that never change once written (names, addresses, SKUs, audit reasons,
//! payment references) are [`Text`]: it reads, compares, prints and serializes like a
//! `String`, and copying an order copies them without allocating (short ones inline, long
//! ones shared).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod allocation;
pub mod diagram;
pub mod error;
pub mod events;
pub mod fraud;
pub mod fulfillment;
pub mod inventory;
pub mod lifecycle;
pub mod metrics;
pub mod money;
pub mod order;
pub mod payment;
pub mod pricing;
pub mod returns;
pub mod service;
pub mod store;
mod tagged;
pub mod text;
pub mod time;

pub use error::{OmsError, OmsResult};
pub use money::{Currency, Money, Rounding};
pub use text::Text;

/// The README's Rust blocks, compiled and run as doctests so the quickstart never rots.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
