//! Pick lists: where each unit sits, the order to walk to them, and scan verification.
//!
//! ## Walking metric
//!
//! A warehouse is a row of parallel aisles numbered 0, 1, 2 … `aisle_pitch_cm` apart. Bins in an
//! aisle are numbered from the front cross-aisle (bin 0) to the back cross-aisle (bin
//! `aisle_length_bins`), `bin_pitch_cm` apart. Shelves are levels: reaching from shelf `a` to
//! shelf `b` costs `|a − b| × shelf_cost_cm` of walking-equivalent effort.
//!
//! - Same aisle: walk along it, `|bin_a − bin_b| × bin_pitch_cm`.
//! - Different aisles: leave by the front or the back cross-aisle, whichever is shorter,
//!   `min(bin_a + bin_b, 2L − bin_a − bin_b) × bin_pitch_cm`, plus `|aisle_a − aisle_b| ×
//!   aisle_pitch_cm` across.
//!
//! plus the shelf term in both cases. The metric is symmetric and zero between equal bins. A
//! route starts at a start point (the pick station), visits every bin and returns to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::Sku;

/// A storage location: aisle, shelf (level) and bin (position along the aisle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BinLocation {
    /// Aisle number, 0 at one end of the warehouse.
    pub aisle: u32,
    /// Shelf level, 0 at the floor.
    pub shelf: u32,
    /// Bin position along the aisle, 0 at the front cross-aisle.
    pub bin: u32,
}

impl BinLocation {
    /// A location.
    pub const fn new(aisle: u32, shelf: u32, bin: u32) -> Self {
        BinLocation { aisle, shelf, bin }
    }
}

/// The walking metric described in the module documentation, in centimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkMetric {
    /// Distance between neighbouring aisles.
    pub aisle_pitch_cm: u64,
    /// Distance between neighbouring bins along an aisle.
    pub bin_pitch_cm: u64,
    /// Effort of reaching one shelf level up or down, as walking distance.
    pub shelf_cost_cm: u64,
    /// Bin number of the back cross-aisle.
    pub aisle_length_bins: u32,
}

impl Default for WalkMetric {
    /// 3 m between aisles, 1 m between bins, 0.5 m per shelf level, 20-bin aisles.
    fn default() -> Self {
        WalkMetric {
            aisle_pitch_cm: 300,
            bin_pitch_cm: 100,
            shelf_cost_cm: 50,
            aisle_length_bins: 20,
        }
    }
}

impl WalkMetric {
    /// Walking distance between two locations, in centimetres (saturating, never panics).
    pub fn distance(&self, a: BinLocation, b: BinLocation) -> u64 {
        let shelf = u64::from(a.shelf.abs_diff(b.shelf)).saturating_mul(self.shelf_cost_cm);
        let along = if a.aisle == b.aisle {
            u64::from(a.bin.abs_diff(b.bin))
        } else {
            // A bin past the configured back is treated as the back of a longer aisle.
            let len = u64::from(self.aisle_length_bins.max(a.bin).max(b.bin));
            let (ba, bb) = (u64::from(a.bin), u64::from(b.bin));
            (ba + bb).min(2 * len - ba - bb)
        };
        let across = u64::from(a.aisle.abs_diff(b.aisle)).saturating_mul(self.aisle_pitch_cm);
        along
            .saturating_mul(self.bin_pitch_cm)
            .saturating_add(across)
            .saturating_add(shelf)
    }

    /// Length of the closed tour start → `stops` in the given order → start.
    pub fn tour_length(&self, start: BinLocation, stops: &[BinLocation]) -> u64 {
        let mut at = start;
        let mut total = 0u64;
        for &s in stops {
            total = total.saturating_add(self.distance(at, s));
            at = s;
        }
        total.saturating_add(self.distance(at, start))
    }
}

/// The visiting order chosen for a pick list and what it saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickRoute {
    /// Indices into the stops as given, in walking order.
    pub order: Vec<usize>,
    /// Tour length when the stops are walked in the order given.
    pub list_distance_cm: u64,
    /// Tour length in the chosen order; never more than `list_distance_cm`.
    pub optimized_distance_cm: u64,
}

impl PickRoute {
    /// Distance saved against walking the list in its given order.
    pub fn saved_cm(&self) -> u64 {
        self.list_distance_cm
            .saturating_sub(self.optimized_distance_cm)
    }
}

/// Order `stops` for a short closed walk from `start`: nearest neighbour, then 2-opt, run from
/// both the nearest-neighbour tour and the given order; the shorter result wins, so the route
/// is never longer than the list order. Ties break on the lower index, so the result is
/// deterministic.
///
/// ```
/// use oms_core::fulfillment::pick::{plan_route, BinLocation, WalkMetric};
/// let m = WalkMetric::default();
/// let stops = [BinLocation::new(3, 0, 5), BinLocation::new(1, 0, 5), BinLocation::new(2, 0, 5)];
/// let r = plan_route(BinLocation::new(0, 0, 0), &stops, &m);
/// assert_eq!(r.order, vec![1, 2, 0]);
/// assert!(r.optimized_distance_cm <= r.list_distance_cm);
/// ```
pub fn plan_route(start: BinLocation, stops: &[BinLocation], metric: &WalkMetric) -> PickRoute {
    let identity: Vec<usize> = (0..stops.len()).collect();
    let list_distance_cm = tour_of(start, stops, &identity, metric);
    let mut best = two_opt(
        start,
        stops,
        nearest_neighbour(start, stops, metric),
        metric,
    );
    let mut best_len = tour_of(start, stops, &best, metric);
    let from_list = two_opt(start, stops, identity, metric);
    let from_list_len = tour_of(start, stops, &from_list, metric);
    if from_list_len < best_len {
        best = from_list;
        best_len = from_list_len;
    }
    PickRoute {
        order: best,
        list_distance_cm,
        optimized_distance_cm: best_len,
    }
}

fn tour_of(start: BinLocation, stops: &[BinLocation], order: &[usize], m: &WalkMetric) -> u64 {
    let seq: Vec<BinLocation> = order
        .iter()
        .filter_map(|&i| stops.get(i).copied())
        .collect();
    m.tour_length(start, &seq)
}

fn nearest_neighbour(start: BinLocation, stops: &[BinLocation], m: &WalkMetric) -> Vec<usize> {
    let mut left: Vec<usize> = (0..stops.len()).collect();
    let mut order = Vec::with_capacity(stops.len());
    let mut at = start;
    while !left.is_empty() {
        // min_by_key keeps the first minimum: the lowest index among equally near stops.
        let Some((pos, &next)) = left
            .iter()
            .enumerate()
            .min_by_key(|(_, &i)| stops.get(i).map_or(u64::MAX, |&s| m.distance(at, s)))
        else {
            break;
        };
        left.remove(pos);
        order.push(next);
        if let Some(&s) = stops.get(next) {
            at = s;
        }
    }
    order
}

/// Reverse segments while that shortens the closed tour (first improvement, bounded passes).
fn two_opt(
    start: BinLocation,
    stops: &[BinLocation],
    mut order: Vec<usize>,
    m: &WalkMetric,
) -> Vec<usize> {
    // Node 0 of the cycle is the start point; nodes 1..=n are the stops in `order`.
    let point = |order: &[usize], k: usize| -> BinLocation {
        if k == 0 || k > order.len() {
            start
        } else {
            order
                .get(k - 1)
                .and_then(|&i| stops.get(i))
                .copied()
                .unwrap_or(start)
        }
    };
    let n = order.len();
    let d = |a: BinLocation, b: BinLocation| i128::from(m.distance(a, b));
    for _pass in 0..100 {
        let mut improved = false;
        // Edge (i, i+1) and edge (j, j+1) with j+1 wrapping to the start point.
        for i in 0..n {
            for j in (i + 2)..=n {
                let (a, b) = (point(&order, i), point(&order, i + 1));
                let (c, e) = (point(&order, j), point(&order, (j + 1) % (n + 1)));
                let delta = d(a, c) + d(b, e) - d(a, b) - d(c, e);
                if delta < 0 {
                    // Cycle nodes i+1 ..= j are order[i ..= j-1].
                    if let Some(seg) = order.get_mut(i..j) {
                        seg.reverse();
                    }
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    order
}

/// One line of a pick list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickLine {
    /// The SKU to pick.
    pub sku: Sku,
    /// Where it is.
    pub location: BinLocation,
    /// Units to pick.
    pub quantity: u32,
    /// Units scanned so far.
    pub scanned: u32,
}

/// A pick list in walking order, with scan verification: every unit is scanned once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickList {
    lines: Vec<PickLine>,
    route: PickRoute,
}

/// Progress after one accepted scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProgress {
    /// The SKU scanned.
    pub sku: Sku,
    /// Units of it scanned so far, this one included.
    pub scanned: u32,
    /// Units of it on the list.
    pub quantity: u32,
    /// Whether every unit of every line is now scanned.
    pub list_complete: bool,
}

impl PickList {
    /// Build the pick list for `lines` (one per SKU, quantities ≥ 1) whose bins are given in
    /// `locations`, ordered by [`plan_route`] from `start`. A SKU without a location is an
    /// [`OmsError::UnknownSku`]; a SKU listed twice is refused, since a scan could not tell
    /// the two lines apart.
    pub fn new(
        lines: &[(Sku, u32)],
        locations: &BTreeMap<Sku, BinLocation>,
        start: BinLocation,
        metric: &WalkMetric,
    ) -> OmsResult<PickList> {
        let mut unordered: Vec<PickLine> = Vec::with_capacity(lines.len());
        for (sku, quantity) in lines {
            if unordered.iter().any(|l| &l.sku == sku) {
                return Err(OmsError::invalid(
                    "lines",
                    format!("{sku} is listed twice; merge the quantities"),
                ));
            }
            if *quantity == 0 {
                return Err(OmsError::InvalidQuantity {
                    quantity: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
            let location = *locations.get(sku).ok_or_else(|| OmsError::UnknownSku {
                sku: sku.to_string(),
            })?;
            unordered.push(PickLine {
                sku: sku.clone(),
                location,
                quantity: *quantity,
                scanned: 0,
            });
        }
        let stops: Vec<BinLocation> = unordered.iter().map(|l| l.location).collect();
        let route = plan_route(start, &stops, metric);
        let lines = route
            .order
            .iter()
            .filter_map(|&i| unordered.get(i).cloned())
            .collect();
        Ok(PickList { lines, route })
    }

    /// The lines, in walking order.
    pub fn lines(&self) -> &[PickLine] {
        &self.lines
    }

    /// The route and its saving.
    pub fn route(&self) -> &PickRoute {
        &self.route
    }

    /// Record one scanned unit of `sku`. A SKU not on the list, or one unit more than listed,
    /// is an [`OmsError::ScanMismatch`] and changes nothing.
    pub fn scan(&mut self, sku: &str) -> OmsResult<ScanProgress> {
        let line = self
            .lines
            .iter_mut()
            .find(|l| l.sku.as_str() == sku)
            .ok_or_else(|| OmsError::ScanMismatch {
                reason: format!("{sku:?} is not on the pick list"),
            })?;
        if line.scanned >= line.quantity {
            return Err(OmsError::ScanMismatch {
                reason: format!(
                    "{sku:?}: all {} listed units already scanned",
                    line.quantity
                ),
            });
        }
        line.scanned += 1;
        let progress = ScanProgress {
            sku: line.sku.clone(),
            scanned: line.scanned,
            quantity: line.quantity,
            list_complete: false,
        };
        Ok(ScanProgress {
            list_complete: self.is_complete(),
            ..progress
        })
    }

    /// Every unit of every line scanned.
    pub fn is_complete(&self) -> bool {
        self.lines.iter().all(|l| l.scanned == l.quantity)
    }

    /// `(sku, units still to scan)` for each incomplete line, in walking order.
    pub fn unscanned(&self) -> Vec<(Sku, u32)> {
        self.lines
            .iter()
            .filter(|l| l.scanned < l.quantity)
            .map(|l| (l.sku.clone(), l.quantity - l.scanned))
            .collect()
    }

    /// Forget every scan (a failed QC sends the parcel back to picking).
    pub fn reset_scans(&mut self) {
        for l in &mut self.lines {
            l.scanned = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    #[test]
    fn metric_same_aisle_cross_aisle_and_shelves() {
        let m = WalkMetric::default();
        let a = BinLocation::new(1, 0, 3);
        assert_eq!(m.distance(a, a), 0);
        assert_eq!(m.distance(a, BinLocation::new(1, 0, 10)), 700);
        assert_eq!(m.distance(a, BinLocation::new(1, 2, 3)), 100);
        // Front is shorter: (3 + 4) bins + 2 aisles.
        assert_eq!(m.distance(a, BinLocation::new(3, 0, 4)), 700 + 600);
        // Back is shorter: (20-18) + (20-17) bins + 1 aisle.
        let b = BinLocation::new(0, 0, 18);
        assert_eq!(m.distance(b, BinLocation::new(1, 0, 17)), 500 + 300);
        assert_eq!(
            m.distance(b, BinLocation::new(1, 0, 17)),
            m.distance(BinLocation::new(1, 0, 17), b)
        );
    }

    #[test]
    fn known_example_zigzag_list_is_straightened() {
        // The list visits aisles 3, 1, 4, 2 (all bin 2, floor level); from the station at
        // aisle 0 bin 0 the best walk is 1, 2, 3, 4 and back.
        let m = WalkMetric::default();
        let stops = [
            BinLocation::new(3, 0, 2),
            BinLocation::new(1, 0, 2),
            BinLocation::new(4, 0, 2),
            BinLocation::new(2, 0, 2),
        ];
        let r = plan_route(BinLocation::new(0, 0, 0), &stops, &m);
        assert_eq!(r.order, vec![1, 3, 0, 2]);
        // List: 0→3 (2+9)=1100, 3→1 (4+6)=1000, 1→4 (4+9)=1300, 4→2 (4+6)=1000, 2→0 (2+6)=800.
        assert_eq!(r.list_distance_cm, 5200);
        // Optimized: 0→1 500, then 3 × 700 between aisles, 4→0 (2+12)=1400.
        assert_eq!(r.optimized_distance_cm, 4000);
        assert_eq!(r.saved_cm(), 1200);
    }

    #[test]
    fn seed_004_pick_list_in_walking_order() {
        // Seed 004: Aisle B Shelf 3 Bin 12 WATER-5L × 2, Aisle D Shelf 1 Bin 05 PHONE-X × 1
        // (aisle A = 0). Listed the other way round, the route still starts with aisle B.
        let locations = BTreeMap::from([
            (sku("WATER-5L"), BinLocation::new(1, 3, 12)),
            (sku("PHONE-X"), BinLocation::new(3, 1, 5)),
        ]);
        let list = PickList::new(
            &[(sku("PHONE-X"), 1), (sku("WATER-5L"), 2)],
            &locations,
            BinLocation::new(0, 0, 0),
            &WalkMetric::default(),
        )
        .unwrap();
        let order: Vec<&str> = list.lines().iter().map(|l| l.sku.as_str()).collect();
        // Either direction of a two-stop tour has the same length; the list order is kept
        // unless strictly shorter, so the route equals the list here.
        assert_eq!(order, vec!["PHONE-X", "WATER-5L"]);
        assert_eq!(list.route().saved_cm(), 0);
    }

    #[test]
    fn scan_verification() {
        let locations = BTreeMap::from([
            (sku("A"), BinLocation::new(0, 0, 1)),
            (sku("B"), BinLocation::new(2, 0, 1)),
        ]);
        let mut list = PickList::new(
            &[(sku("A"), 2), (sku("B"), 1)],
            &locations,
            BinLocation::new(0, 0, 0),
            &WalkMetric::default(),
        )
        .unwrap();
        assert_eq!(list.scan("C").unwrap_err().code(), "scan_mismatch");
        assert!(!list.scan("A").unwrap().list_complete);
        assert_eq!(list.unscanned(), vec![(sku("A"), 1), (sku("B"), 1)]);
        list.scan("A").unwrap();
        let before = list.clone();
        assert_eq!(list.scan("A").unwrap_err().code(), "scan_mismatch");
        assert_eq!(list, before);
        assert!(list.scan("B").unwrap().list_complete);
        assert!(list.is_complete());
        list.reset_scans();
        assert_eq!(list.unscanned().len(), 2);
    }

    #[test]
    fn missing_location_and_zero_quantity_refused() {
        let locations = BTreeMap::from([(sku("A"), BinLocation::new(0, 0, 1))]);
        let m = WalkMetric::default();
        let start = BinLocation::new(0, 0, 0);
        let e = PickList::new(&[(sku("Z"), 1)], &locations, start, &m).unwrap_err();
        assert_eq!(e.code(), "unknown_sku");
        let e = PickList::new(&[(sku("A"), 0)], &locations, start, &m).unwrap_err();
        assert_eq!(e.code(), "invalid_quantity");
        let e = PickList::new(&[(sku("A"), 1), (sku("A"), 2)], &locations, start, &m).unwrap_err();
        assert_eq!(e.code(), "invalid_field");
    }

    #[test]
    fn empty_and_single_stop_routes() {
        let m = WalkMetric::default();
        let s = BinLocation::new(0, 0, 0);
        let r = plan_route(s, &[], &m);
        assert_eq!((r.order.len(), r.list_distance_cm), (0, 0));
        let r = plan_route(s, &[BinLocation::new(0, 0, 4)], &m);
        assert_eq!((r.order, r.optimized_distance_cm), (vec![0], 800));
    }

    fn loc() -> impl Strategy<Value = BinLocation> {
        (0u32..8, 0u32..4, 0u32..25).prop_map(|(a, s, b)| BinLocation::new(a, s, b))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn optimized_never_longer_than_list(
            start in loc(),
            stops in prop::collection::vec(loc(), 0..14),
        ) {
            let m = WalkMetric::default();
            let r = plan_route(start, &stops, &m);
            let mut seen = r.order.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..stops.len()).collect::<Vec<_>>());
            prop_assert_eq!(r.list_distance_cm, m.tour_length(start, &stops));
            let walked: Vec<BinLocation> = r.order.iter().map(|&i| stops[i]).collect();
            prop_assert_eq!(r.optimized_distance_cm, m.tour_length(start, &walked));
            prop_assert!(r.optimized_distance_cm <= r.list_distance_cm);
        }

        #[test]
        fn metric_is_symmetric_and_obeys_triangle(a in loc(), b in loc(), c in loc()) {
            let m = WalkMetric::default();
            prop_assert_eq!(m.distance(a, b), m.distance(b, a));
            prop_assert!(m.distance(a, c) <= m.distance(a, b) + m.distance(b, c));
        }
    }
}
