//! Seeded allocation instances for the benches and the side-by-side comparison with peer
//! solvers.
//!
//! An instance spreads warehouses and customers uniformly over a square region, draws 100
//! SKUs with Zipf-like popularity (weight `1/rank`), gives each order 5 distinct lines of 1–3
//! units, stocks each SKU at half the warehouses with `ratio ×` the instance's demand for it
//! (1.3 "tight", 3.0 "ample"), charges 8 per parcel and `0.5 + 0.01·km` per unit shipped.
//! Everything comes from one `u64` seed through splitmix64, so every run and every language
//! sees the same instance.

use std::collections::BTreeMap;

use oms_core::allocation::{
    AllocationOrder, AllocationProblem, OrderLine, ShippingRates, Sla, Warehouse,
};
use oms_core::order::{GeoPoint, Sku};
use oms_core::OmsResult;
use rust_decimal::Decimal;

/// Number of SKUs in every instance.
pub const SKUS: usize = 100;
/// Lines per order.
pub const LINES_PER_ORDER: usize = 5;
/// Stock ratio of a tight instance.
pub const TIGHT: f64 = 1.3;
/// Stock ratio of an ample instance.
pub const AMPLE: f64 = 3.0;

/// splitmix64: a tiny, well-mixed, seedable generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// The shape of an instance.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Generator seed.
    pub seed: u64,
    /// Number of warehouses.
    pub warehouses: usize,
    /// Number of orders.
    pub orders: usize,
    /// Stock per SKU as a multiple of its total demand.
    pub ratio: f64,
    /// Side of the square region, in degrees (1° ≈ 111 km).
    pub region_deg: f64,
}

impl Spec {
    /// `orders` orders over `warehouses` warehouses in a 2°×2° region.
    pub fn new(seed: u64, warehouses: usize, orders: usize, ratio: f64) -> Self {
        Spec {
            seed,
            warehouses,
            orders,
            ratio,
            region_deg: 2.0,
        }
    }
}

fn sku_name(i: usize) -> String {
    format!("SKU-{i:03}")
}

fn point(rng: &mut SplitMix64, side: f64) -> GeoPoint {
    // Centred on 40°N 74°W; rounded to 1e-4° (≈ 11 m) so JSON round-trips exactly.
    let r = |v: f64| (v * 10_000.0).round() / 10_000.0;
    GeoPoint {
        lat: r(40.0 + rng.unit() * side - side / 2.0),
        lng: r(-74.0 + rng.unit() * side - side / 2.0),
    }
}

/// Build the instance described by `spec`.
pub fn generate(spec: Spec) -> OmsResult<AllocationProblem> {
    let mut rng = SplitMix64::new(spec.seed);
    let skus: Vec<Sku> = (0..SKUS)
        .map(|i| Sku::new(&sku_name(i)))
        .collect::<OmsResult<_>>()?;
    // Zipf-like popularity: weight 1/rank, sampled through the cumulative sum.
    let weights: Vec<f64> = (1..=SKUS).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(SKUS);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let draw = |rng: &mut SplitMix64| {
        let u = rng.unit();
        cumulative.iter().position(|c| u < *c).unwrap_or(SKUS - 1)
    };
    let mut warehouses: Vec<Warehouse> = (0..spec.warehouses)
        .map(|i| Warehouse {
            id: format!("WH-{i:02}"),
            location: point(&mut rng, spec.region_deg),
            stock: BTreeMap::new(),
            item_cost: BTreeMap::new(),
            parcel_cost: Decimal::from(8),
            parcel_capacity: None,
        })
        .collect();
    let mut demand = vec![0u64; SKUS];
    let mut orders = Vec::with_capacity(spec.orders);
    for i in 0..spec.orders {
        let customer = point(&mut rng, spec.region_deg);
        let mut chosen: Vec<usize> = Vec::with_capacity(LINES_PER_ORDER);
        while chosen.len() < LINES_PER_ORDER {
            let s = draw(&mut rng);
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        let lines = chosen
            .iter()
            .map(|s| {
                let quantity = 1 + rng.below(3) as u32;
                if let Some(d) = demand.get_mut(*s) {
                    *d += u64::from(quantity);
                }
                OrderLine {
                    sku: skus.get(*s).cloned().unwrap_or_else(|| skus[0].clone()),
                    quantity,
                    capacity: 1,
                }
            })
            .collect();
        orders.push(AllocationOrder {
            id: format!("O-{i:04}"),
            customer_location: customer,
            sla: Sla::Standard,
            lines,
        });
    }
    // Each SKU at half the warehouses (a random half), its stock spread evenly with the
    // remainder going to the first ones; a SKU nobody ordered still gets one unit per holder.
    let holders = (spec.warehouses / 2).max(1);
    for (s, sku) in skus.iter().enumerate() {
        let mut idx: Vec<usize> = (0..spec.warehouses).collect();
        for k in (1..idx.len()).rev() {
            let j = rng.below(k + 1);
            idx.swap(k, j);
        }
        let want = ((demand.get(s).copied().unwrap_or(0) as f64) * spec.ratio).ceil() as u64;
        let want = want.max(holders as u64);
        for (rank, wi) in idx.iter().take(holders).enumerate() {
            let share = want / holders as u64 + u64::from((rank as u64) < want % holders as u64);
            if let Some(w) = warehouses.get_mut(*wi) {
                w.stock.insert(sku.clone(), share as u32);
            }
        }
    }
    Ok(AllocationProblem {
        warehouses,
        drivers: vec![],
        orders,
        shipping: ShippingRates {
            base_per_unit: Decimal::new(5, 1),
            per_unit_km: Decimal::new(1, 2),
        },
    })
}

/// The same instance with only order `i` (for per-order solves against full stock).
pub fn single_order(problem: &AllocationProblem, i: usize) -> AllocationProblem {
    AllocationProblem {
        warehouses: problem.warehouses.clone(),
        drivers: problem.drivers.clone(),
        orders: problem.orders.get(i).cloned().into_iter().collect(),
        shipping: problem.shipping.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_instance_and_shape() {
        let a = generate(Spec::new(7, 20, 50, TIGHT)).unwrap();
        let b = generate(Spec::new(7, 20, 50, TIGHT)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, generate(Spec::new(8, 20, 50, TIGHT)).unwrap());
        assert_eq!(a.warehouses.len(), 20);
        assert_eq!(a.orders.len(), 50);
        for o in &a.orders {
            assert_eq!(o.lines.len(), LINES_PER_ORDER);
            assert!(o.lines.iter().all(|l| (1..=3).contains(&l.quantity)));
        }
        // Every SKU is held by exactly half the warehouses, with at least ratio × demand.
        for s in 0..SKUS {
            let sku = Sku::new(&sku_name(s)).unwrap();
            let holders = a
                .warehouses
                .iter()
                .filter(|w| w.stock.contains_key(&sku))
                .count();
            assert_eq!(holders, 10);
            let stock: u64 = a
                .warehouses
                .iter()
                .filter_map(|w| w.stock.get(&sku))
                .map(|q| u64::from(*q))
                .sum();
            let demand: u64 = a
                .orders
                .iter()
                .flat_map(|o| &o.lines)
                .filter(|l| l.sku == sku)
                .map(|l| u64::from(l.quantity))
                .sum();
            assert!(stock as f64 >= demand as f64 * TIGHT - 1e-9);
        }
    }

    #[test]
    fn batch_is_no_dearer_than_serving_orders_in_turn() {
        use oms_core::allocation::{allocate, AllocationOptions, PlanStatus, Strategy};
        let p = generate(Spec::new(3, 8, 12, TIGHT)).unwrap();
        let options = AllocationOptions {
            explain_alternatives: false,
            time_limit_ms: Some(50),
            ..AllocationOptions::default()
        };
        let seq = allocate(&p, Strategy::Optimal, &options).unwrap();
        let batch = allocate(&p, Strategy::Batch, &options).unwrap();
        assert!(batch.total_cost <= seq.total_cost);
        assert!(matches!(
            batch.status,
            PlanStatus::Optimal | PlanStatus::TimeLimit
        ));
        assert!((0.0..=1.0).contains(&batch.gap), "{}", batch.gap);
        if batch.status == PlanStatus::Optimal {
            assert!(batch.gap.abs() < f64::EPSILON);
        }
        let shipped = |plan: &oms_core::allocation::Plan| -> u64 {
            plan.parcels
                .iter()
                .flat_map(|x| &x.lines)
                .map(|l| u64::from(l.quantity))
                .sum()
        };
        let demand: u64 = p
            .orders
            .iter()
            .flat_map(|o| &o.lines)
            .map(|l| u64::from(l.quantity))
            .sum();
        assert_eq!(shipped(&batch), demand);
    }

    #[test]
    fn popularity_is_skewed() {
        let p = generate(Spec::new(1, 4, 400, AMPLE)).unwrap();
        let count = |name: &str| {
            p.orders
                .iter()
                .flat_map(|o| &o.lines)
                .filter(|l| l.sku.as_str() == name)
                .count()
        };
        assert!(count("SKU-000") > 3 * count("SKU-050"));
    }
}
