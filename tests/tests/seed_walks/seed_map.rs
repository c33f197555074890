//! The seed-name mapping: every state name of every seed order diagram and every seed edge,
//! onto the canonical [`OrderStatus`] and [`OrderEvent`]s. This is the one copy of the table:
//! the walks in `seed_walks.rs` run it and `docs/seed-states.md` is checked against it.

use oms_core::lifecycle::{OrderEvent as E, OrderStatus as S};

/// Where a name comes from: `000 §1`, `001 §2`, `002 diagram`, `002 transitions`,
/// `003 OrderState`, `004`, `004 stages`.
pub type Seed = &'static str;

/// A seed's name for a state, and the canonical status it is.
pub struct SeedState {
    /// The seed group.
    pub seed: Seed,
    /// The name exactly as the seed writes it.
    pub name: &'static str,
    /// The canonical status.
    pub status: S,
    /// Why, where the mapping needs a word (pseudo-states, fraud decisions).
    pub note: &'static str,
}

/// A seed edge `from --label--> to` and the canonical events that perform it. `[*]` is the
/// diagram's start or end. No events means the order's status does not change: a creation
/// (`[*] -->`, done by `Order::create`), a step between two names of the same status (fork and
/// join pseudo-states), or the end arrow out of a terminal status.
pub struct SeedEdge {
    /// The seed group.
    pub seed: Seed,
    /// Source state name, or `[*]`.
    pub from: &'static str,
    /// The label drawn on the arrow (empty when the seed draws none).
    pub label: &'static str,
    /// Target state name, or `[*]`.
    pub to: &'static str,
    /// The canonical events that perform the edge, in order.
    pub events: &'static [E],
}

const fn st(seed: Seed, name: &'static str, status: S) -> SeedState {
    SeedState {
        seed,
        name,
        status,
        note: "",
    }
}

const fn pseudo(seed: Seed, name: &'static str, status: S, note: &'static str) -> SeedState {
    SeedState {
        seed,
        name,
        status,
        note,
    }
}

const fn ed(
    seed: Seed,
    from: &'static str,
    label: &'static str,
    to: &'static str,
    events: &'static [E],
) -> SeedEdge {
    SeedEdge {
        seed,
        from,
        label,
        to,
        events,
    }
}

const S000: Seed = "000 §1";
const S001: Seed = "001 §2";
const S002: Seed = "002 diagram";
const S002JS: Seed = "002 transitions";
const S003: Seed = "003 OrderState";
const S004: Seed = "004";
const S004ST: Seed = "004 stages";

/// Every seed group, in document order.
pub const SEEDS: [Seed; 7] = [S000, S001, S002, S002JS, S003, S004, S004ST];

/// Every state name of every seed order diagram.
#[rustfmt::skip] // one row per line reads as the table it is
pub const STATES: &[SeedState] = &[
    st(S000, "Order_Created", S::Pending),
    st(S000, "Validated", S::Validated),
    st(S000, "Payment_Pending", S::PaymentPending),
    st(S000, "Payment_Success", S::Confirmed),
    st(S000, "Payment_Failed", S::PaymentFailed),
    pseudo(S000, "Fork_PostPayment", S::Processing, "fork pseudo-state: the order is processing while both branches run"),
    pseudo(S000, "Inventory_Reserve", S::Processing, "fork branch, run by the reservation machine; the order stays processing"),
    pseudo(S000, "Fulfillment_Prepare", S::Processing, "fork branch, run by the fulfillment machine; the order stays processing"),
    pseudo(S000, "Join_PostProcessing", S::Processing, "join pseudo-state: the order stays processing until every branch is done"),
    st(S000, "Awaiting_Fulfillment", S::AwaitingShipment),
    st(S000, "Shipped", S::Shipped),
    st(S000, "Delivered", S::Delivered),
    st(S000, "Completed", S::Completed),
    st(S000, "Cancelled", S::Cancelled),
    st(S001, "Pending", S::Pending),
    st(S001, "PaymentPending", S::PaymentPending),
    st(S001, "Confirmed", S::Confirmed),
    st(S001, "Processing", S::Processing),
    st(S001, "Packed", S::Packed),
    st(S001, "Shipped", S::Shipped),
    st(S001, "InTransit", S::InTransit),
    st(S001, "OutForDelivery", S::OutForDelivery),
    st(S001, "Delivered", S::Delivered),
    st(S001, "Cancelled", S::Cancelled),
    st(S001, "ReturnRequested", S::ReturnRequested),
    st(S001, "ReturnApproved", S::ReturnApproved),
    st(S001, "ReturnRejected", S::ReturnRejected),
    st(S001, "Refunded", S::Refunded),
    st(S002, "Pending", S::Pending),
    st(S002, "PaymentPending", S::PaymentPending),
    st(S002, "Confirmed", S::Confirmed),
    st(S002, "Processing", S::Processing),
    st(S002, "Shipped", S::Shipped),
    st(S002, "Delivered", S::Delivered),
    st(S002, "Cancelled", S::Cancelled),
    st(S002, "ReturnRequested", S::ReturnRequested),
    st(S002, "ReturnApproved", S::ReturnApproved),
    st(S002, "Refunded", S::Refunded),
    st(S002JS, "pending", S::Pending),
    st(S002JS, "payment_pending", S::PaymentPending),
    st(S002JS, "confirmed", S::Confirmed),
    st(S002JS, "processing", S::Processing),
    st(S002JS, "shipped", S::Shipped),
    st(S002JS, "delivered", S::Delivered),
    st(S002JS, "return_requested", S::ReturnRequested),
    st(S002JS, "return_approved", S::ReturnApproved),
    st(S002JS, "return_rejected", S::ReturnRejected),
    st(S002JS, "refunded", S::Refunded),
    st(S002JS, "cancelled", S::Cancelled),
    st(S003, "Pending", S::Pending),
    st(S003, "Processing", S::Processing),
    st(S003, "Awaiting_Shipment", S::AwaitingShipment),
    st(S003, "Shipped", S::Shipped),
    st(S003, "Delivered", S::Delivered),
    st(S004, "PENDING", S::Pending),
    st(S004, "AUTHORIZED", S::Authorized),
    pseudo(S004, "APPROVED", S::Confirmed, "fraud decision (score < 0.5): cleared for fulfillment"),
    pseudo(S004, "MANUAL_REVIEW", S::OnHold, "fraud decision (score > 0.5): held for a reviewer"),
    pseudo(S004, "REJECT", S::Cancelled, "fraud decision (score > 0.8): auto-cancel, authorization voided"),
    st(S004, "PACKED", S::Packed),
    st(S004, "IN_TRANSIT", S::InTransit),
    st(S004, "DELIVERED", S::Delivered),
    st(S004ST, "1. ORDER CREATED", S::Pending),
    st(S004ST, "2. PAYMENT AUTH", S::Authorized),
    pseudo(S004ST, "3. FRAUD CHECK", S::Authorized, "the check runs while the order is authorized; its outcome moves it on"),
    st(S004ST, "4. ALLOC ENGINE", S::Allocated),
    st(S004ST, "5. PICK & PACK", S::Picked),
    st(S004ST, "6. PACKED & LABELED", S::Packed),
    st(S004ST, "7. IN TRANSIT", S::InTransit),
    st(S004ST, "8. DELIVERED", S::Delivered),
];

/// Every edge of every seed order diagram.
#[rustfmt::skip] // one row per line reads as the table it is
pub const EDGES: &[SeedEdge] = &[
    ed(S000, "[*]", "Customer places order", "Order_Created", &[]),
    ed(S000, "Order_Created", "validate_order()", "Validated", &[E::Validate]),
    ed(S000, "Validated", "request_payment()", "Payment_Pending", &[E::RequestPayment]),
    ed(S000, "Validated", "validation_failed / notify_customer", "Cancelled", &[E::Cancel]),
    ed(S000, "Payment_Pending", "payment_success", "Payment_Success", &[E::PaymentSucceeded]),
    ed(S000, "Payment_Pending", "payment_failed", "Payment_Failed", &[E::PaymentFailed]),
    ed(S000, "Payment_Success", "", "Fork_PostPayment", &[E::StartFulfillment]),
    ed(S000, "Payment_Failed", "cancel_order()", "Cancelled", &[E::Cancel]),
    ed(S000, "Fork_PostPayment", "reserve_inventory", "Inventory_Reserve", &[]),
    ed(S000, "Fork_PostPayment", "create_fulfillment_task", "Fulfillment_Prepare", &[]),
    ed(S000, "Inventory_Reserve", "", "Join_PostProcessing", &[]),
    ed(S000, "Fulfillment_Prepare", "", "Join_PostProcessing", &[]),
    ed(S000, "Join_PostProcessing", "all_subtasks_complete", "Awaiting_Fulfillment", &[E::ReadyToShip]),
    ed(S000, "Awaiting_Fulfillment", "handed_to_carrier", "Shipped", &[E::Ship]),
    ed(S000, "Shipped", "delivered_to_customer", "Delivered", &[E::Deliver]),
    ed(S000, "Delivered", "confirm_delivery / auto_confirm", "Completed", &[E::Complete]),
    ed(S000, "Cancelled", "", "[*]", &[]),
    ed(S000, "Completed", "", "[*]", &[]),
    ed(S001, "[*]", "Create Order", "Pending", &[]),
    ed(S001, "Pending", "Reserve Inventory", "PaymentPending", &[E::ReserveInventory]),
    ed(S001, "PaymentPending", "Payment Success", "Confirmed", &[E::PaymentSucceeded]),
    ed(S001, "PaymentPending", "Payment Failed", "Cancelled", &[E::Cancel]),
    ed(S001, "Confirmed", "Start Fulfillment", "Processing", &[E::StartFulfillment]),
    ed(S001, "Processing", "Items Packed", "Packed", &[E::Pack]),
    ed(S001, "Packed", "Shipped", "Shipped", &[E::Ship]),
    ed(S001, "Shipped", "In Transit", "InTransit", &[E::InTransit]),
    ed(S001, "InTransit", "Out for Delivery", "OutForDelivery", &[E::OutForDelivery]),
    ed(S001, "OutForDelivery", "Delivered", "Delivered", &[E::Deliver]),
    ed(S001, "Delivered", "Complete", "[*]", &[E::Complete]),
    ed(S001, "Confirmed", "Cancel Request", "Cancelled", &[E::Cancel]),
    ed(S001, "Processing", "Cancel Request", "Cancelled", &[E::Cancel]),
    ed(S001, "Cancelled", "Refund Processed", "[*]", &[]),
    ed(S001, "Delivered", "Return Request", "ReturnRequested", &[E::RequestReturn]),
    ed(S001, "ReturnRequested", "Approve Return", "ReturnApproved", &[E::ApproveReturn]),
    ed(S001, "ReturnRequested", "Reject Return", "ReturnRejected", &[E::RejectReturn]),
    ed(S001, "ReturnApproved", "Process Refund", "Refunded", &[E::Refund]),
    ed(S001, "ReturnRejected", "Keep Order", "Delivered", &[E::KeepOrder]),
    ed(S001, "Refunded", "Complete", "[*]", &[]),
    ed(S002, "[*]", "Create Order", "Pending", &[]),
    ed(S002, "Pending", "Reserve Inventory", "PaymentPending", &[E::ReserveInventory]),
    ed(S002, "PaymentPending", "Payment Success", "Confirmed", &[E::PaymentSucceeded]),
    ed(S002, "PaymentPending", "Payment Failed", "Cancelled", &[E::Cancel]),
    ed(S002, "Confirmed", "Start Fulfillment", "Processing", &[E::StartFulfillment]),
    ed(S002, "Processing", "Ship Order", "Shipped", &[E::Ship]),
    ed(S002, "Shipped", "Delivery Complete", "Delivered", &[E::Deliver]),
    ed(S002, "Delivered", "", "[*]", &[E::Complete]),
    ed(S002, "Confirmed", "Cancel Request", "Cancelled", &[E::Cancel]),
    ed(S002, "Processing", "Cancel Request", "Cancelled", &[E::Cancel]),
    ed(S002, "Delivered", "Return Request", "ReturnRequested", &[E::RequestReturn]),
    ed(S002, "ReturnRequested", "Approve Return", "ReturnApproved", &[E::ApproveReturn]),
    ed(S002, "ReturnApproved", "Process Refund", "Refunded", &[E::Refund]),
    ed(S002, "Refunded", "", "[*]", &[]),
    ed(S002JS, "pending", "", "payment_pending", &[E::ReserveInventory]),
    ed(S002JS, "pending", "", "cancelled", &[E::Cancel]),
    ed(S002JS, "payment_pending", "", "confirmed", &[E::PaymentSucceeded]),
    ed(S002JS, "payment_pending", "", "cancelled", &[E::Cancel]),
    ed(S002JS, "confirmed", "", "processing", &[E::StartFulfillment]),
    ed(S002JS, "confirmed", "", "cancelled", &[E::Cancel]),
    ed(S002JS, "processing", "", "shipped", &[E::Ship]),
    ed(S002JS, "processing", "", "cancelled", &[E::Cancel]),
    ed(S002JS, "shipped", "", "delivered", &[E::Deliver]),
    ed(S002JS, "delivered", "", "return_requested", &[E::RequestReturn]),
    ed(S002JS, "return_requested", "", "return_approved", &[E::ApproveReturn]),
    ed(S002JS, "return_requested", "", "return_rejected", &[E::RejectReturn]),
    ed(S002JS, "return_approved", "", "refunded", &[E::Refund]),
    ed(S003, "Pending", "check_for_fraud, reserve_inventory", "Processing", &[E::PaymentAuthorized, E::Confirm, E::StartFulfillment]),
    ed(S003, "Processing", "request_fulfillment", "Awaiting_Shipment", &[E::ReadyToShip]),
    ed(S003, "Awaiting_Shipment", "notify_shipped", "Shipped", &[E::Ship]),
    ed(S003, "Shipped", "", "Delivered", &[E::Deliver]),
    ed(S004, "PENDING", "order.authorized", "AUTHORIZED", &[E::PaymentAuthorized]),
    ed(S004, "AUTHORIZED", "fraud_score < 0.5", "APPROVED", &[E::Confirm]),
    ed(S004, "AUTHORIZED", "fraud_score > 0.5", "MANUAL_REVIEW", &[E::HoldForReview]),
    ed(S004, "AUTHORIZED", "fraud_score > 0.8", "REJECT", &[E::ReviewRejected]),
    ed(S004, "PACKED", "driver scans package", "IN_TRANSIT", &[E::InTransit]),
    ed(S004, "IN_TRANSIT", "order.delivered", "DELIVERED", &[E::Deliver]),
    ed(S004ST, "1. ORDER CREATED", "", "2. PAYMENT AUTH", &[E::PaymentAuthorized]),
    ed(S004ST, "2. PAYMENT AUTH", "", "3. FRAUD CHECK", &[]),
    ed(S004ST, "3. FRAUD CHECK", "", "4. ALLOC ENGINE", &[E::Confirm, E::Allocate]),
    ed(S004ST, "4. ALLOC ENGINE", "", "5. PICK & PACK", &[E::Pick]),
    ed(S004ST, "5. PICK & PACK", "", "6. PACKED & LABELED", &[E::Pack]),
    ed(S004ST, "6. PACKED & LABELED", "", "7. IN TRANSIT", &[E::InTransit]),
    ed(S004ST, "7. IN TRANSIT", "", "8. DELIVERED", &[E::Deliver]),
];

/// The canonical status of a seed's state name.
pub fn status_of(seed: &str, name: &str) -> Option<S> {
    STATES
        .iter()
        .find(|s| s.seed == seed && s.name == name)
        .map(|s| s.status)
}

fn cell(text: &str) -> String {
    if text.is_empty() {
        "—".to_owned()
    } else {
        format!("`{text}`")
    }
}

/// How an edge is performed, as written in the document's table.
pub fn events_cell(edge: &SeedEdge) -> String {
    if !edge.events.is_empty() {
        let names: Vec<String> = edge.events.iter().map(|e| format!("`{e}`")).collect();
        names.join(", ")
    } else if edge.from == "[*]" {
        "(creation)".to_owned()
    } else if edge.to == "[*]" {
        "(end: terminal)".to_owned()
    } else {
        "(internal: status unchanged)".to_owned()
    }
}

/// The rows of the state table, as cells.
pub fn state_rows() -> Vec<Vec<String>> {
    STATES
        .iter()
        .map(|s| {
            vec![
                s.seed.to_owned(),
                cell(s.name),
                cell(s.status.as_str()),
                s.note.to_owned(),
            ]
        })
        .collect()
}

/// The rows of the edge table, as cells.
pub fn edge_rows() -> Vec<Vec<String>> {
    EDGES
        .iter()
        .map(|e| {
            vec![
                e.seed.to_owned(),
                cell(e.from),
                cell(e.label),
                cell(e.to),
                events_cell(e),
            ]
        })
        .collect()
}

/// A Markdown table with `header` and `rows`.
pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut lines = vec![
        format!("| {} |", header.join(" | ")),
        format!("|{}", " --- |".repeat(header.len())),
    ];
    lines.extend(rows.iter().map(|row| format!("| {} |", row.join(" | "))));
    lines.push(String::new());
    lines.join("\n")
}

/// Column names of the state table.
pub const STATE_HEADER: [&str; 4] = ["seed", "seed state", "canonical status", "note"];
/// Column names of the edge table.
pub const EDGE_HEADER: [&str; 5] = ["seed", "from", "label", "to", "canonical events"];
