//! Fraud signals held in memory, for tests, simulations and small hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::OmsResult;
use crate::fraud::{address_key, CustomerHistory, FraudSignals, VelocityKey};
use crate::order::Address;
use crate::time::Timestamp;

#[derive(Debug, Default)]
struct SignalData {
    histories: BTreeMap<String, CustomerHistory>,
    blacklist: BTreeSet<String>,
    known_methods: BTreeSet<(String, String)>,
    flagged_devices: BTreeSet<String>,
    /// Each key's order times, kept sorted so a velocity count is a binary search.
    orders: BTreeMap<VelocityKey, Vec<Timestamp>>,
}

/// [`FraudSignals`] held in memory, for tests, simulations and small hosts.
#[derive(Debug, Default)]
pub struct InMemoryFraudSignals(Mutex<SignalData>);

impl InMemoryFraudSignals {
    /// Empty: every customer new, nothing flagged.
    pub fn new() -> Self {
        InMemoryFraudSignals::default()
    }

    fn data(&self) -> MutexGuard<'_, SignalData> {
        // The data stays usable even if a holder panicked mid-update in a test.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Set a customer's history.
    pub fn set_history(&self, customer_id: &str, history: CustomerHistory) {
        self.data()
            .histories
            .insert(customer_id.to_owned(), history);
    }
    /// Blacklist an address.
    pub fn blacklist(&self, address: &Address) {
        self.data().blacklist.insert(address_key(address));
    }
    /// Record that a customer has paid with a method.
    pub fn add_known_method(&self, customer_id: &str, method: &str) {
        self.data()
            .known_methods
            .insert((customer_id.to_owned(), method.to_owned()));
    }
    /// Flag a device fingerprint.
    pub fn flag_device(&self, fingerprint: &str) {
        self.data().flagged_devices.insert(fingerprint.to_owned());
    }
    /// Record a placed order for velocity counts.
    pub fn record_order(
        &self,
        customer_id: &str,
        device: Option<&str>,
        address: &Address,
        at: Timestamp,
    ) {
        let mut d = self.data();
        let mut keys = vec![VelocityKey::Customer(customer_id.to_owned())];
        if let Some(dev) = device {
            keys.push(VelocityKey::Device(dev.to_owned()));
        }
        keys.push(VelocityKey::Address(address_key(address)));
        for key in keys {
            let times = d.orders.entry(key).or_default();
            // Orders usually arrive in time order; an earlier one is inserted in place.
            let at_index = times.partition_point(|t| *t <= at);
            times.insert(at_index, at);
        }
    }
}

impl FraudSignals for InMemoryFraudSignals {
    fn customer_history(&self, customer_id: &str) -> OmsResult<CustomerHistory> {
        Ok(self
            .data()
            .histories
            .get(customer_id)
            .cloned()
            .unwrap_or_default())
    }
    fn is_address_blacklisted(&self, address_key: &str) -> OmsResult<bool> {
        Ok(self.data().blacklist.contains(address_key))
    }
    fn is_known_payment_method(&self, customer_id: &str, method: &str) -> OmsResult<bool> {
        Ok(self
            .data()
            .known_methods
            .contains(&(customer_id.to_owned(), method.to_owned())))
    }
    fn is_device_flagged(&self, fingerprint: &str) -> OmsResult<bool> {
        Ok(self.data().flagged_devices.contains(fingerprint))
    }
    fn orders_since(&self, key: &VelocityKey, since: Timestamp) -> OmsResult<u32> {
        let d = self.data();
        let n = d.orders.get(key).map_or(0, |times| {
            times.len() - times.partition_point(|t| *t < since)
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
