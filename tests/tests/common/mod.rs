//! Shared test helpers: a small world for service tests (in-memory stores, a fake gateway, a
//! manual clock), and the PostgreSQL test cluster and temp files for the store tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unused_self
)]

use std::path::PathBuf;
use std::sync::Arc;

use oms_core::fraud::InMemoryFraudSignals;
use oms_core::inventory::{InventoryStore, MemoryInventory, WarehouseId};
use oms_core::lifecycle::Actor;
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::payment::{FakeGateway, NoJitter};
use oms_core::pricing::{PricingContext, TaxTable};
use oms_core::service::{
    CheckoutFlow, Dependencies, MemoryNotifier, NotificationKind, OrderService, PaymentInput,
    ServiceConfig,
};
use oms_core::store::{MemoryStore, OrderStore};
use oms_core::time::{ManualClock, SequentialIds, Timestamp};
use oms_store::PostgresStore;
use rust_decimal::Decimal;

pub fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

pub struct World {
    pub svc: OrderService,
    pub orders: Arc<MemoryStore>,
    pub inventory: Arc<MemoryInventory>,
    pub gateway: Arc<FakeGateway>,
    pub signals: Arc<InMemoryFraudSignals>,
    pub notifier: Arc<MemoryNotifier>,
    pub clock: Arc<ManualClock>,
}

impl World {
    /// Two warehouses; WH1 has 10 each of A, B, C; WH2 has 5 of A. Prices: A 10.00, B 25.00.
    pub fn new(flow: CheckoutFlow) -> World {
        let clock = Arc::new(ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0)));
        let ids = Arc::new(SequentialIds::default());
        let orders = Arc::new(MemoryStore::new());
        let inventory = Arc::new(MemoryInventory::new(ids.clone()));
        let (wh1, wh2) = (
            WarehouseId::new("WH1").unwrap(),
            WarehouseId::new("WH2").unwrap(),
        );
        for wh in [&wh1, &wh2] {
            inventory.add_warehouse(wh).unwrap();
        }
        for sku in ["A", "B", "C"] {
            inventory
                .receive(&Sku::new(sku).unwrap(), &wh1, 10)
                .unwrap();
        }
        inventory.receive(&Sku::new("A").unwrap(), &wh2, 5).unwrap();
        let gateway = Arc::new(FakeGateway::honouring_keys());
        let signals = Arc::new(InMemoryFraudSignals::new());
        let notifier = Arc::new(MemoryNotifier::default());
        let deps = Dependencies {
            orders: orders.clone(),
            inventory: inventory.clone(),
            gateway: gateway.clone(),
            fraud: signals.clone(),
            notifier: notifier.clone(),
            clock: clock.clone(),
            ids,
            pause: clock.clone(),
            jitter: Arc::new(NoJitter),
        };
        let pricing = PricingContext {
            tax: TaxTable::new().with_rate("US", "standard", Decimal::ZERO),
            ..PricingContext::default()
        };
        let mut config = ServiceConfig::new(vec![wh1, wh2], pricing);
        config.flow = flow;
        let svc = OrderService::new(deps, config).unwrap();
        World {
            svc,
            orders,
            inventory,
            gateway,
            signals,
            notifier,
            clock,
        }
    }

    pub fn customer(&self) -> Actor {
        Actor::Customer("c1".into())
    }

    pub fn staff(&self) -> Actor {
        Actor::Staff("s1".into())
    }

    pub fn card(&self) -> PaymentInput {
        PaymentInput::new("card-4242")
    }

    pub fn draft(&self, lines: &[(&str, i64)]) -> OrderDraft {
        OrderDraft {
            customer: Customer {
                id: "c1".into(),
                email: "c1@example.com".into(),
                name: "C One".into(),
            },
            shipping_address: AddressInput {
                name: "C One".into(),
                line1: "1 Main St".into(),
                city: "New York".into(),
                region: "NY".into(),
                postal_code: "10001".into(),
                country: "US".into(),
                location: Some((40.71, -74.0)),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: Currency::USD,
            lines: lines
                .iter()
                .map(|(sku, q)| {
                    LineItemInput::new(
                        sku,
                        *q,
                        if *sku == "B" {
                            usd("25.00")
                        } else {
                            usd("10.00")
                        },
                    )
                })
                .collect(),
            promo_codes: vec![],
        }
    }

    pub fn available(&self, sku: &str, wh: &str) -> u64 {
        self.inventory
            .stock(&Sku::new(sku).unwrap(), &WarehouseId::new(wh).unwrap())
            .unwrap()
            .available()
    }

    pub fn inventory_on_hand(&self, sku: &str, wh: &str) -> u64 {
        self.inventory
            .stock(&Sku::new(sku).unwrap(), &WarehouseId::new(wh).unwrap())
            .unwrap()
            .on_hand
    }

    pub fn damaged(&self, sku: &str, wh: &str) -> u64 {
        self.inventory
            .stock(&Sku::new(sku).unwrap(), &WarehouseId::new(wh).unwrap())
            .unwrap()
            .damaged
    }

    pub fn inventory_reservation(&self, id: u64) -> oms_core::inventory::Reservation {
        self.inventory.reservation(id).unwrap()
    }

    /// Rebuild the service with another capture policy (same stores and gateway).
    pub fn set_capture(&mut self, policy: oms_core::payment::CapturePolicy) {
        let deps = self.svc.dependencies().clone();
        let mut config = self.svc.config().clone();
        config.capture = policy;
        self.svc = OrderService::new(deps, config).unwrap();
    }

    /// Rebuild the service with a sourcing network: WH1 in Newark, WH2 in Manhattan (next to
    /// the customers), parcel cost 8, shipping 0.50 + 0.01/km per unit.
    pub fn set_sourcing(&mut self) {
        use oms_core::service::{Site, SourcingNetwork};
        let deps = self.svc.dependencies().clone();
        let mut config = self.svc.config().clone();
        let site = |wh: &str, lat: f64, lng: f64| Site {
            warehouse: WarehouseId::new(wh).unwrap(),
            location: oms_core::order::GeoPoint::new(lat, lng).unwrap(),
            parcel_cost: Decimal::new(8, 0),
            item_cost: std::collections::BTreeMap::new(),
        };
        config.sourcing = Some(SourcingNetwork {
            sites: vec![site("WH1", 40.735, -74.172), site("WH2", 40.754, -73.984)],
            shipping: oms_core::allocation::ShippingRates {
                base_per_unit: Decimal::new(5, 1),
                per_unit_km: Decimal::new(1, 2),
            },
        });
        self.svc = OrderService::new(deps, config).unwrap();
    }

    /// Rebuild the service with other boxes at packing (same stores and gateway).
    pub fn set_boxes(&mut self, boxes: Vec<oms_core::fulfillment::pack::BoxSpec>) {
        let deps = self.svc.dependencies().clone();
        let mut config = self.svc.config().clone();
        config.fulfillment.boxes = boxes;
        self.svc = OrderService::new(deps, config).unwrap();
    }

    pub fn only_order(&self) -> Order {
        let ids = self.orders.order_ids().unwrap();
        assert_eq!(ids.len(), 1);
        self.orders.order(ids[0]).unwrap()
    }

    pub fn notes(&self) -> Vec<NotificationKind> {
        self.notifier.take().into_iter().map(|n| n.kind).collect()
    }
}

// ---- stores: the PostgreSQL test cluster and temp files ----------------------------------
/// The PostgreSQL URL of the throwaway cluster `scripts/test` starts.
pub fn postgres_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "OMS_TEST_DATABASE_URL is not set. Run scripts/test (it starts a throwaway PostgreSQL on \
             127.0.0.1), or start one yourself (eval \"$(scripts/pg-start /tmp/oms-pg)\") and export \
             OMS_TEST_DATABASE_URL=postgresql://USER@127.0.0.1:PORT/DB"
        )
    })
}

/// A schema name private to `test` in this process, dropped if a previous run left it.
pub fn fresh_schema(test: &str) -> String {
    let schema = format!("t_{test}_{}", std::process::id());
    let mut c = postgres::Client::connect(&postgres_url(), postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    schema
}

/// A fresh schema per test, so tests never see each other's rows.
pub fn postgres_store(test: &str) -> PostgresStore {
    let schema = fresh_schema(test);
    PostgresStore::connect_with_schema(&postgres_url(), &schema).unwrap()
}

/// Another connection to an existing schema (its migrations already applied).
pub fn postgres_connect(schema: &str) -> PostgresStore {
    PostgresStore::connect_with_schema(&postgres_url(), schema).unwrap()
}

/// An empty directory private to `name` in this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A new order of 2 × `sku` at 9.95 CHF, shipped to an address that reads like SQL.
pub fn placed_order(ids: &SequentialIds, sku: &str) -> Order {
    let draft = OrderDraft {
        customer: Customer {
            id: "c1".into(),
            email: "c1@example.com".into(),
            name: "C One".into(),
        },
        shipping_address: AddressInput {
            name: "C One".into(),
            line1: "x'); DROP TABLE orders;--".into(),
            city: "Zürich".into(),
            postal_code: "8001".into(),
            country: "CH".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::from_code("CHF").unwrap(),
        lines: vec![LineItemInput::new(
            sku,
            2,
            Money::parse("9.95", Currency::from_code("CHF").unwrap()).unwrap(),
        )],
        promo_codes: vec![],
    };
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 12, 0, 0));
    Order::create(&draft, &Actor::System, &clock, ids).unwrap()
}

/// `o` as a writer moves it on: the next version, a moment later.
pub fn moved_on(o: &Order) -> Order {
    let mut next = o.clone();
    next.version += 1;
    next.updated_at = oms_core::time::Timestamp(next.updated_at.0 + 1);
    next
}
