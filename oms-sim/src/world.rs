//! The simulated world: catalog, warehouses, customers (some risky), promotions, pricing.

use oms_core::error::OmsResult;
use oms_core::inventory::WarehouseId;
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, Sku};
use oms_core::pricing::{PricingContext, Promotion, ShippingRate, TaxTable};
use rust_decimal::Decimal;

use crate::rng::Rng;

/// One product of the catalog.
#[derive(Debug, Clone)]
pub struct Product {
    /// SKU.
    pub sku: Sku,
    /// Unit price.
    pub price: Money,
    /// Tax class (`standard` or `reduced`).
    pub tax_class: String,
    /// Grams per unit.
    pub weight_grams: u32,
    /// Vehicle capacity units per unit.
    pub capacity_units: u32,
}

/// One warehouse and the products it stocks, with initial units.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Id.
    pub id: WarehouseId,
    /// Location (lat, lng).
    pub location: (f64, f64),
    /// `(catalog index, initial units)`.
    pub stock: Vec<(usize, u64)>,
}

/// A customer with an address; risky ones carry a flagged device or a blacklisted address.
#[derive(Debug, Clone)]
pub struct Shopper {
    /// The customer.
    pub customer: Customer,
    /// Where they ship.
    pub address: AddressInput,
    /// Their device fingerprint.
    pub device: String,
    /// Their card token.
    pub card: String,
    /// Flagged device / blacklisted address.
    pub risky: bool,
}

/// Everything generated from the seed before the first order.
#[derive(Debug, Clone)]
pub struct World {
    /// Products, most popular first.
    pub catalog: Vec<Product>,
    /// Warehouses in reservation priority order.
    pub warehouses: Vec<Warehouse>,
    /// Customers.
    pub shoppers: Vec<Shopper>,
    /// Promotion codes customers may enter.
    pub promo_codes: Vec<String>,
    /// Pricing rules.
    pub pricing: PricingContext,
}

const STREETS: &[&str] = &[
    "Main St",
    "Broadway",
    "Park Ave",
    "Elm St",
    "Ocean Pkwy",
    "5th Ave",
    "Atlantic Ave",
    "Queens Blvd",
];
const NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie",
];

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::USD)
}

/// A small New York-area world; sizes scale with the number of orders to simulate.
pub fn generate(rng: &mut Rng, orders: usize) -> OmsResult<World> {
    let n_skus = 60;
    let catalog: Vec<Product> = (0..n_skus)
        .map(|i| {
            let price = i64::try_from(rng.range(199, 12_000)).unwrap_or(999);
            Ok(Product {
                sku: Sku::new(&format!("SKU-{i:03}"))?,
                price: usd(price),
                tax_class: if rng.chance(250) {
                    "reduced".into()
                } else {
                    "standard".into()
                },
                weight_grams: u32::try_from(rng.range(50, 4_000)).unwrap_or(500),
                capacity_units: u32::try_from(rng.range(1, 4)).unwrap_or(1),
            })
        })
        .collect::<OmsResult<_>>()?;
    let sites = [
        ("WH-MANHATTAN", (40.754, -73.984)),
        ("WH-BROOKLYN", (40.678, -73.944)),
        ("WH-QUEENS", (40.728, -73.794)),
        ("WH-NEWARK", (40.735, -74.172)),
    ];
    // Demand per sku is about orders × 2.5 lines × 2 units × popularity; stock covers most of it
    // up front and receipts top it up during the run, so popular items do run short sometimes.
    let total_units = (orders as u64).saturating_mul(4).max(200);
    let mut warehouses: Vec<Warehouse> = sites
        .iter()
        .map(|(id, loc)| {
            Ok(Warehouse {
                id: WarehouseId::new(id)?,
                location: *loc,
                stock: Vec::new(),
            })
        })
        .collect::<OmsResult<_>>()?;
    for i in 0..n_skus {
        // popularity falls with the index (the skewed picker favours low indices)
        let weight = (2 * (n_skus - i) - 1) as u64;
        let units = total_units * weight / (n_skus * n_skus) as u64;
        let holders = rng.range(2, 3) as usize;
        let first = rng.below(warehouses.len() as u64) as usize;
        for k in 0..holders {
            let wh = (first + k) % warehouses.len();
            warehouses[wh]
                .stock
                .push((i, units / holders as u64 + rng.range(1, 5)));
        }
    }
    let shoppers = (0..200)
        .map(|i| {
            let name = NAMES[rng.below(NAMES.len() as u64) as usize];
            let risky = rng.chance(60);
            let lat = 40.60 + rng.below(300) as f64 / 1000.0;
            let lng = -74.10 + rng.below(350) as f64 / 1000.0;
            Ok(Shopper {
                customer: Customer::new(
                    &format!("cust-{i:04}"),
                    &format!("{}.{i}@example.com", name.to_lowercase()),
                    name,
                )?,
                address: AddressInput {
                    name: name.into(),
                    line1: format!(
                        "{} {}",
                        rng.range(1, 999),
                        STREETS[rng.below(STREETS.len() as u64) as usize]
                    ),
                    city: "New York".into(),
                    region: "NY".into(),
                    postal_code: format!("10{:03}", rng.below(300)),
                    country: "US".into(),
                    location: Some((lat, lng)),
                    ..AddressInput::default()
                },
                device: format!("dev-{i:04}"),
                card: format!("card-{i:04}"),
                risky,
            })
        })
        .collect::<OmsResult<_>>()?;
    let pricing = PricingContext {
        promotions: vec![
            Promotion::percentage("SPRING10", Decimal::new(10, 0)),
            Promotion::fixed_amount("WELCOME5", usd(500)).with_min_subtotal(usd(3_000)),
            Promotion::free_shipping("FREESHIP").stacking(true),
        ],
        tax: TaxTable::new()
            .with_rate("US-NY", "standard", Decimal::new(8_875, 5))
            .with_rate("US-NY", "reduced", Decimal::ZERO),
        shipping: ShippingRate::Flat {
            amount: usd(599),
            free_over: Some(usd(5_000)),
        },
        ..PricingContext::default()
    };
    Ok(World {
        catalog,
        warehouses,
        shoppers,
        promo_codes: vec!["SPRING10".into(), "WELCOME5".into(), "FREESHIP".into()],
        pricing,
    })
}
