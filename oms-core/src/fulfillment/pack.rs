//! Packing: choosing the box, checking the package weight, and the shipping label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::Sku;
use crate::text::Text;

/// A box size the packing station stocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxSpec {
    /// The box's id (e.g. `"S"`, `"M"`, `"L"`).
    pub id: String,
    /// Inner volume in cubic centimetres.
    pub volume_cm3: u64,
    /// Most content weight the box may carry, in grams.
    pub max_weight_grams: u64,
    /// Weight of the empty box and filler, in grams.
    pub tare_grams: u64,
}

/// Size and weight of one unit of a SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSpec {
    /// Volume of one unit in cubic centimetres.
    pub volume_cm3: u64,
    /// Weight of one unit in grams.
    pub weight_grams: u64,
}

/// Total volume and weight of what goes into one box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contents {
    /// Total volume in cubic centimetres.
    pub volume_cm3: u64,
    /// Total weight in grams.
    pub weight_grams: u64,
}

/// Sum the volume and weight of `lines` from the per-unit `items` catalogue. A SKU missing
/// from the catalogue is an [`OmsError::UnknownSku`]; totals beyond `u64` an overflow.
pub fn contents(lines: &[(Sku, u32)], items: &BTreeMap<Sku, ItemSpec>) -> OmsResult<Contents> {
    let mut c = Contents::default();
    for (sku, qty) in lines {
        let item = items.get(sku).ok_or_else(|| OmsError::UnknownSku {
            sku: sku.to_string(),
        })?;
        let q = u64::from(*qty);
        let v = item.volume_cm3.checked_mul(q);
        let w = item.weight_grams.checked_mul(q);
        c.volume_cm3 = v
            .and_then(|v| c.volume_cm3.checked_add(v))
            .ok_or_else(|| OmsError::overflow("package volume"))?;
        c.weight_grams = w
            .and_then(|w| c.weight_grams.checked_add(w))
            .ok_or_else(|| OmsError::overflow("package weight"))?;
    }
    Ok(c)
}

/// The smallest box that holds `contents`: smallest volume, then smallest weight capacity,
/// then lowest id, among boxes whose volume and weight capacity are both enough. None fitting
/// (or no boxes configured) is an [`OmsError::NoBoxFits`].
///
/// ```
/// use oms_core::fulfillment::pack::{choose_box, BoxSpec, Contents};
/// let b = |id: &str, v, w| BoxSpec { id: id.into(), volume_cm3: v, max_weight_grams: w, tare_grams: 100 };
/// let boxes = [b("L", 30_000, 20_000), b("S", 3_000, 2_000), b("M", 12_000, 10_000)];
/// let c = Contents { volume_cm3: 2_500, weight_grams: 5_000 };
/// assert_eq!(choose_box(&boxes, c).unwrap().id, "M"); // S has room but is too weak
/// ```
pub fn choose_box(boxes: &[BoxSpec], contents: Contents) -> OmsResult<&BoxSpec> {
    boxes
        .iter()
        .filter(|b| {
            b.volume_cm3 >= contents.volume_cm3 && b.max_weight_grams >= contents.weight_grams
        })
        .min_by(|a, b| {
            (a.volume_cm3, a.max_weight_grams, &a.id).cmp(&(
                b.volume_cm3,
                b.max_weight_grams,
                &b.id,
            ))
        })
        .ok_or_else(|| OmsError::NoBoxFits {
            reason: format!(
                "{} cm3 and {} g fit none of {} configured boxes",
                contents.volume_cm3,
                contents.weight_grams,
                boxes.len()
            ),
        })
}

/// How far a measured package weight may be from the expected one: the larger of an absolute
/// allowance and a relative one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightTolerance {
    /// Absolute allowance in grams (scale precision, filler).
    pub grams: u64,
    /// Relative allowance in thousandths of the expected weight.
    pub permille: u32,
}

impl Default for WeightTolerance {
    /// 20 g or 2 %, whichever is larger.
    fn default() -> Self {
        WeightTolerance {
            grams: 20,
            permille: 20,
        }
    }
}

impl WeightTolerance {
    /// The allowance for a package expected to weigh `expected_grams`.
    pub fn allowance(&self, expected_grams: u64) -> u64 {
        let relative = u128::from(expected_grams) * u128::from(self.permille) / 1000;
        self.grams.max(u64::try_from(relative).unwrap_or(u64::MAX))
    }
}

/// Check a weighed package: a difference beyond the tolerance means wrong or missing items, an
/// [`OmsError::WeightMismatch`].
pub fn check_weight(
    expected_grams: u64,
    measured_grams: u64,
    tolerance: WeightTolerance,
) -> OmsResult<()> {
    if expected_grams.abs_diff(measured_grams) > tolerance.allowance(expected_grams) {
        return Err(OmsError::WeightMismatch {
            expected_grams,
            measured_grams,
        });
    }
    Ok(())
}

/// The packed parcel: chosen box and the weight it should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Id of the chosen box.
    pub box_id: Text,
    /// What goes in it.
    pub contents: Contents,
    /// Contents plus box tare: what the scale should show.
    pub expected_grams: u64,
    /// What the scale showed, once weighed.
    pub measured_grams: Option<u64>,
}

impl Package {
    /// Pack `contents` into the smallest fitting box of `boxes`.
    pub fn choose(boxes: &[BoxSpec], contents: Contents) -> OmsResult<Package> {
        let b = choose_box(boxes, contents)?;
        let expected_grams = contents
            .weight_grams
            .checked_add(b.tare_grams)
            .ok_or_else(|| OmsError::overflow("package weight"))?;
        Ok(Package {
            box_id: Text::from(&b.id),
            contents,
            expected_grams,
            measured_grams: None,
        })
    }
}

/// A shipping label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The carrier's code (e.g. `"UPS"`).
    pub carrier: Text,
    /// Tracking number: carrier code and a ten-digit id from the id generator.
    pub tracking_number: Text,
}

impl Label {
    /// A label for `carrier` with tracking id `id` (from the [`crate::time::IdGenerator`]).
    /// The carrier code must be 1–16 ASCII letters, digits or `-`.
    pub fn new(carrier: &str, id: u64) -> OmsResult<Label> {
        if carrier.is_empty() {
            return Err(OmsError::MissingField {
                field: "carrier".into(),
            });
        }
        if carrier.len() > 16
            || !carrier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(OmsError::invalid(
                "carrier",
                "must be 1-16 ASCII letters, digits or '-'",
            ));
        }
        Ok(Label {
            carrier: carrier.into(),
            tracking_number: format!("{}-{id:010}", carrier.to_ascii_uppercase()).into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(id: &str, v: u64, w: u64) -> BoxSpec {
        BoxSpec {
            id: id.into(),
            volume_cm3: v,
            max_weight_grams: w,
            tare_grams: 150,
        }
    }

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    #[test]
    fn smallest_fitting_box_with_tie_breaks() {
        let boxes = [
            b("L", 30_000, 20_000),
            b("M2", 12_000, 15_000),
            b("M", 12_000, 10_000),
            b("Mb", 12_000, 10_000),
            b("S", 3_000, 2_000),
        ];
        let pick = |v, w| {
            choose_box(
                &boxes,
                Contents {
                    volume_cm3: v,
                    weight_grams: w,
                },
            )
            .map(|b| b.id.clone())
        };
        assert_eq!(pick(3_000, 2_000).unwrap(), "S");
        assert_eq!(pick(3_001, 1).unwrap(), "M");
        assert_eq!(pick(100, 12_000).unwrap(), "M2");
        assert_eq!(pick(12_001, 1).unwrap(), "L");
        assert_eq!(pick(0, 0).unwrap(), "S");
        assert_eq!(pick(30_001, 1).unwrap_err().code(), "no_box_fits");
        assert_eq!(pick(1, 20_001).unwrap_err().code(), "no_box_fits");
        assert_eq!(
            choose_box(&[], Contents::default()).unwrap_err().code(),
            "no_box_fits"
        );
    }

    #[test]
    fn contents_and_package_weight() {
        let items = BTreeMap::from([
            (
                sku("WATER-5L"),
                ItemSpec {
                    volume_cm3: 5_500,
                    weight_grams: 5_100,
                },
            ),
            (
                sku("PHONE-X"),
                ItemSpec {
                    volume_cm3: 900,
                    weight_grams: 400,
                },
            ),
        ]);
        let c = contents(&[(sku("WATER-5L"), 2), (sku("PHONE-X"), 1)], &items).unwrap();
        assert_eq!(
            c,
            Contents {
                volume_cm3: 11_900,
                weight_grams: 10_600
            }
        );
        let p = Package::choose(&[b("M", 12_000, 10_000), b("L", 30_000, 20_000)], c).unwrap();
        assert_eq!((p.box_id.as_str(), p.expected_grams), ("L", 10_750));
        let e = contents(&[(sku("NOPE"), 1)], &items).unwrap_err();
        assert_eq!(e.code(), "unknown_sku");
        let huge = BTreeMap::from([(
            sku("X"),
            ItemSpec {
                volume_cm3: u64::MAX,
                weight_grams: 1,
            },
        )]);
        assert_eq!(
            contents(&[(sku("X"), 2)], &huge).unwrap_err().code(),
            "overflow"
        );
    }

    #[test]
    fn weight_check_uses_larger_allowance() {
        let t = WeightTolerance::default();
        assert_eq!(t.allowance(500), 20);
        assert_eq!(t.allowance(10_750), 215);
        assert!(check_weight(10_750, 10_965, t).is_ok());
        assert!(check_weight(10_750, 10_535, t).is_ok());
        let e = check_weight(10_750, 10_966, t).unwrap_err();
        assert_eq!(
            e,
            OmsError::WeightMismatch {
                expected_grams: 10_750,
                measured_grams: 10_966
            }
        );
        assert!(check_weight(500, 521, t).is_err());
    }

    #[test]
    fn label_tracking_number() {
        let l = Label::new("ups", 42).unwrap();
        assert_eq!(l.tracking_number, "UPS-0000000042");
        assert_eq!(Label::new("", 1).unwrap_err().code(), "missing_field");
        assert_eq!(Label::new("U P S", 1).unwrap_err().code(), "invalid_field");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chosen_box_fits_and_no_smaller_box_does(
            boxes in prop::collection::vec((1u64..50, 1u64..50), 0..8),
            v in 0u64..50,
            w in 0u64..50,
        ) {
            let boxes: Vec<BoxSpec> = boxes
                .iter()
                .enumerate()
                .map(|(i, &(bv, bw))| b(&format!("B{i}"), bv, bw))
                .collect();
            let c = Contents { volume_cm3: v, weight_grams: w };
            match choose_box(&boxes, c) {
                Ok(chosen) => {
                    prop_assert!(chosen.volume_cm3 >= v && chosen.max_weight_grams >= w);
                    for other in &boxes {
                        if other.volume_cm3 >= v && other.max_weight_grams >= w {
                            prop_assert!(
                                (chosen.volume_cm3, chosen.max_weight_grams, &chosen.id)
                                    <= (other.volume_cm3, other.max_weight_grams, &other.id)
                            );
                        }
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), "no_box_fits");
                    prop_assert!(boxes.iter().all(|x| x.volume_cm3 < v || x.max_weight_grams < w));
                }
            }
        }
    }
}
