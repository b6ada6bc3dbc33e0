//! Places on the ring: [`Location`] in `[0, 1)` and the [`Distance`]
//! between two of them, the shorter way round.
//!
//! Both are fixed point: a `u64` counting units of 2⁻⁶⁴, so arithmetic is
//! exact, wraps where the ring wraps, and is the same on every machine.
//!
//! The text form is `0.` followed by exactly 20 decimal digits, the value
//! rounded to the nearest 10⁻²⁰ (`0.25000000000000000000`). Twenty digits
//! are enough to tell any two locations apart (2⁻⁶⁴ ≈ 5.4 × 10⁻²⁰), so
//! location → text → location round-trips exactly. Parsing accepts 1 to 20
//! digits (`0.25`) and gives the nearest location.
//!
//! ```
//! use reactor_ring_proto::{Distance, Location};
//!
//! let a: Location = "0.875".parse().unwrap();
//! let b: Location = "0.125".parse().unwrap();
//! // The shorter way round goes through 0.
//! assert_eq!(a.distance(b).to_string(), "0.25000000000000000000");
//! assert_eq!(a.distance(b), b.distance(a));
//! assert_eq!(a.to_string(), "0.87500000000000000000");
//! // 0.9 is not a multiple of 2⁻⁶⁴: it parses to the nearest location.
//! let c: Location = "0.9".parse().unwrap();
//! assert_eq!(c.to_string(), "0.89999999999999999998");
//! assert!(a.distance(c) <= Distance::MAX);
//! ```

use std::fmt;
use std::str::FromStr;

/// 5²⁰: `x / 2⁶⁴ · 10²⁰ = x · 5²⁰ / 2⁴⁴`, which fits in a `u128`.
const FIVE_POW_20: u128 = 95_367_431_640_625;
/// Decimal digits in the text form.
const DIGITS: usize = 20;

/// A place on the ring `[0, 1)`, in units of 2⁻⁶⁴.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location(u64);

/// The distance between two locations the shorter way round, in `[0, ½]`,
/// in units of 2⁻⁶⁴.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Distance(u64);

/// Which way round the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Increasing locations (wrapping from just below 1 to 0).
    Clockwise,
    /// Decreasing locations.
    CounterClockwise,
}

impl Location {
    /// Location 0.
    pub const ZERO: Location = Location(0);

    /// The location `raw / 2⁶⁴`.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The fixed-point value: this location is `raw / 2⁶⁴`.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The location nearest to `x`, if `x` is in `[0, 1)`.
    pub fn from_f64(x: f64) -> Option<Self> {
        if !(0.0..1.0).contains(&x) {
            return None;
        }
        // 2⁶⁴ · x < 2⁶⁴ for x < 1, but rounding can reach 2⁶⁴: saturate.
        let scaled = x * 18_446_744_073_709_551_616.0;
        Some(Self(if scaled >= u64::MAX as f64 {
            u64::MAX
        } else {
            scaled as u64
        }))
    }

    /// The location as a float (rounded; for reports and plots).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }

    /// The distance to `other` the shorter way round.
    pub fn distance(self, other: Location) -> Distance {
        let forward = other.0.wrapping_sub(self.0);
        let backward = self.0.wrapping_sub(other.0);
        Distance(forward.min(backward))
    }

    /// How far `other` is going clockwise from here, in units of 2⁻⁶⁴
    /// (`0` for `other == self`, otherwise in `1..2⁶⁴`).
    pub fn clockwise_to(self, other: Location) -> u64 {
        other.0.wrapping_sub(self.0)
    }

    /// The location `distance` away in `direction`.
    pub fn step(self, distance: Distance, direction: Direction) -> Location {
        match direction {
            Direction::Clockwise => Location(self.0.wrapping_add(distance.0)),
            Direction::CounterClockwise => Location(self.0.wrapping_sub(distance.0)),
        }
    }
}

impl Distance {
    /// No distance.
    pub const ZERO: Distance = Distance(0);
    /// Half the ring: the longest distance there is.
    pub const MAX: Distance = Distance(1 << 63);

    /// The distance `raw / 2⁶⁴`, capped at [`Distance::MAX`].
    pub const fn from_raw(raw: u64) -> Self {
        if raw > Self::MAX.0 {
            Self::MAX
        } else {
            Self(raw)
        }
    }

    /// The fixed-point value: this distance is `raw / 2⁶⁴`.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The distance nearest to `x`, clamped to `[0, ½]`.
    pub fn from_f64(x: f64) -> Self {
        let x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 0.5) };
        Self::from_raw((x * 18_446_744_073_709_551_616.0) as u64)
    }

    /// The distance as a float in `[0, 0.5]`.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }
}

/// `0.` and the 20-digit decimal of `raw / 2⁶⁴`, rounded to nearest.
fn write_fraction(f: &mut fmt::Formatter<'_>, raw: u64) -> fmt::Result {
    // round(raw · 10²⁰ / 2⁶⁴) = round(raw · 5²⁰ / 2⁴⁴); below 10²⁰, since
    // raw ≤ 2⁶⁴ − 1 and the half-unit 5 · 10⁻²¹ is less than 2⁻⁶⁴.
    let decimal = (u128::from(raw) * FIVE_POW_20 + (1 << 43)) >> 44;
    write!(f, "0.{decimal:0DIGITS$}")
}

/// Why a location's text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationParseError {
    /// Not `0.` followed by 1 to 20 decimal digits.
    #[error("location {0:?} is not `0.` followed by 1 to 20 decimal digits")]
    Syntax(String),
    /// So close to 1 that it rounds to 1, outside the ring `[0, 1)`.
    #[error("location {0:?} rounds to 1; locations are in [0, 1)")]
    RoundsToOne(String),
}

/// Parses `0.` and 1 to 20 digits to the nearest multiple of 2⁻⁶⁴.
fn parse_fraction(text: &str) -> Result<u64, LocationParseError> {
    let syntax = || LocationParseError::Syntax(text.to_string());
    let digits = text.strip_prefix("0.").ok_or_else(syntax)?;
    if digits.is_empty() || digits.len() > DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let mut decimal: u128 = 0;
    for b in digits.bytes() {
        decimal = decimal * 10 + u128::from(b - b'0');
    }
    for _ in digits.len()..DIGITS {
        decimal *= 10;
    }
    // round(decimal · 2⁶⁴ / 10²⁰) = round(decimal · 2⁴⁴ / 5²⁰); decimal <
    // 10²⁰ < 2⁶⁷, so the product is below 2¹¹¹.
    let raw = ((decimal << 44) + FIVE_POW_20 / 2) / FIVE_POW_20;
    u64::try_from(raw).map_err(|_| LocationParseError::RoundsToOne(text.to_string()))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fraction(f, self.0)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl FromStr for Location {
    type Err = LocationParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_fraction(text).map(Location)
    }
}

impl fmt::Display for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fraction(f, self.0)
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Distance({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loc(raw: u64) -> Location {
        Location::from_raw(raw)
    }

    #[test]
    fn text_form_is_twenty_digits_and_parses_short_forms() {
        assert_eq!(Location::ZERO.to_string(), "0.00000000000000000000");
        assert_eq!(loc(1 << 62).to_string(), "0.25000000000000000000");
        assert_eq!(loc(u64::MAX).to_string(), "0.99999999999999999995");
        assert_eq!("0.25".parse::<Location>(), Ok(loc(1 << 62)));
        assert_eq!("0.5".parse::<Location>(), Ok(loc(1 << 63)));
        assert_eq!(Distance::MAX.to_string(), "0.50000000000000000000");
    }

    #[test]
    fn bad_text_is_refused_with_the_reason() {
        for bad in [
            "",
            "0",
            "0.",
            "1.0",
            ".5",
            "0.5x",
            "0.-1",
            " 0.5",
            "0.123456789012345678901",
        ] {
            assert!(
                matches!(bad.parse::<Location>(), Err(LocationParseError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "0.99999999999999999999".parse::<Location>(),
            Err(LocationParseError::RoundsToOne(_))
        ));
    }

    #[test]
    fn distance_goes_the_short_way_round() {
        let a = loc(u64::MAX - 9);
        let b = loc(10);
        assert_eq!(a.distance(b), Distance::from_raw(20));
        assert_eq!(a.clockwise_to(b), 20);
        assert_eq!(b.clockwise_to(a), u64::MAX - 19);
        assert_eq!(loc(0).distance(loc(1 << 63)), Distance::MAX);
        assert_eq!(
            a.step(Distance::from_raw(20), Direction::Clockwise),
            b,
            "stepping wraps"
        );
        assert_eq!(
            b.step(Distance::from_raw(20), Direction::CounterClockwise),
            a
        );
    }

    #[test]
    fn floats_convert_within_range_only() {
        assert_eq!(Location::from_f64(0.5), Some(loc(1 << 63)));
        assert_eq!(Location::from_f64(1.0), None);
        assert_eq!(Location::from_f64(-0.1), None);
        assert_eq!(Location::from_f64(f64::NAN), None);
        assert_eq!(Distance::from_f64(0.9), Distance::MAX);
        assert_eq!(Distance::from_raw(u64::MAX), Distance::MAX);
    }

    proptest! {
        #[test]
        fn distance_is_a_metric(a: u64, b: u64, c: u64) {
            let (a, b, c) = (loc(a), loc(b), loc(c));
            prop_assert_eq!(a.distance(a), Distance::ZERO);
            prop_assert_eq!(a.distance(b) == Distance::ZERO, a == b);
            prop_assert_eq!(a.distance(b), b.distance(a));
            prop_assert!(a.distance(b) <= Distance::MAX);
            let via = u128::from(a.distance(b).raw()) + u128::from(b.distance(c).raw());
            prop_assert!(u128::from(a.distance(c).raw()) <= via);
        }

        #[test]
        fn distance_is_the_shorter_of_the_two_ways(a: u64, b: u64) {
            let (a, b) = (loc(a), loc(b));
            let d = a.distance(b).raw();
            prop_assert_eq!(d, a.clockwise_to(b).min(b.clockwise_to(a)));
            let dir = if a.clockwise_to(b) == d { Direction::Clockwise } else { Direction::CounterClockwise };
            prop_assert_eq!(a.step(a.distance(b), dir), b);
        }

        #[test]
        fn text_round_trips(raw: u64) {
            let text = loc(raw).to_string();
            prop_assert_eq!(text.len(), 22);
            prop_assert_eq!(text.parse::<Location>(), Ok(loc(raw)));
            let d = Distance::from_raw(raw);
            prop_assert_eq!(parse_fraction(&d.to_string()), Ok(d.raw()));
        }

        #[test]
        fn parsing_then_printing_keeps_the_digits(digits in "[0-9]{20}") {
            let text = format!("0.{digits}");
            if let Ok(location) = text.parse::<Location>() {
                // Two decimals 10⁻²⁰ apart can round to the same location,
                // so the printed form is the nearest 20-digit decimal: within
                // half a unit of 2⁻⁶⁴ of the text.
                let printed: u128 = location.to_string()[2..].parse().expect("digits");
                let given: u128 = digits.parse().expect("digits");
                prop_assert!(printed.abs_diff(given) <= 3, "{} vs {}", printed, given);
            }
        }

        #[test]
        fn order_of_floats_follows_order_of_locations(a: u64, b: u64) {
            prop_assume!(a < b);
            prop_assert!(loc(a).as_f64() <= loc(b).as_f64());
        }
    }
}
