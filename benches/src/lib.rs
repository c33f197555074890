//! Seeded allocation instances for benches and peer comparisons.
