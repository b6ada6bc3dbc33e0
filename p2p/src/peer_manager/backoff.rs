//! Exponential backoff with jitter between dials of one peer.

use std::time::Duration;

use rand::Rng;

/// The delay before retrying a peer after its `failures`-th consecutive
/// failure (`failures >= 1`): `min_retry · 2^(failures−1)`, capped at
/// `max_retry`, then scaled by a uniform factor in `[1 − jitter, 1 + jitter]`
/// so that peers that failed together do not retry together.
pub(crate) fn backoff_delay(
    failures: u32,
    min_retry: Duration,
    max_retry: Duration,
    jitter: f64,
    rng: &mut impl Rng,
) -> Duration {
    let base = base_delay(failures, min_retry, max_retry);
    let unit: f64 = rng.random();
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

/// The delay before jitter.
pub(crate) fn base_delay(failures: u32, min_retry: Duration, max_retry: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    min_retry.saturating_mul(1u32 << doublings).min(max_retry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn base_delay_doubles_from_min_retry_and_caps_at_max_retry() {
        assert_eq!(base_delay(1, MIN, MAX), MIN);
        assert_eq!(base_delay(2, MIN, MAX), MIN * 2);
        assert_eq!(base_delay(5, MIN, MAX), MIN * 16);
        assert_eq!(base_delay(12, MIN, MAX), Duration::from_millis(512_000));
        assert_eq!(base_delay(13, MIN, MAX), MAX);
        assert_eq!(base_delay(u32::MAX, MIN, MAX), MAX);
        assert_eq!(base_delay(3, MIN, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        for failures in 1..40 {
            let base = base_delay(failures, MIN, MAX);
            for _ in 0..50 {
                let delay = backoff_delay(failures, MIN, MAX, 0.2, &mut rng);
                assert!(
                    delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2),
                    "{delay:?} vs {base:?}"
                );
            }
        }
        assert_eq!(backoff_delay(3, MIN, MAX, 0.0, &mut rng), MIN * 4);
    }
}
