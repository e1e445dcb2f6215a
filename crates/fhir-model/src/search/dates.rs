//! The instant range a FHIR date, dateTime or instant covers, as R4 search compares them
//! (search.html §3.1.1.4.5 "date"): a value stands for the whole range its precision implies,
//! and instants are compared as instants, whatever offset they were written in.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The half-open range `[low, high)` a FHIR date or dateTime covers, both ends in UTC and whole
/// microseconds (the finest precision Cairn stores and compares):
///
/// - `2021` is the year, `2021-03` the month, `2021-03-14` the day; a value without a time has
///   no zone, and Cairn, whose own time zone is UTC, takes those ranges in UTC;
/// - `2021-03-14T10:00Z` is the minute (search values may leave out the seconds);
/// - `2021-03-14T10:00:05-05:00` the second, `…:05.1Z` the tenth of a second, and so on to the
///   microsecond (finer fractions keep the microsecond they fall in);
/// - a time without a zone is taken as UTC (R4 asks for a zone whenever there is a time; a
///   search value without one is read in the server's zone, which is UTC);
/// - a leap second (`:60`) is the last microsecond of its minute.
///
/// `None` for anything else, including impossible dates (`2021-02-29`).
pub fn date_range(text: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let mut cursor = Cursor { text, at: 0 };
    let year = cursor.digits(4)?;
    if !cursor.eat(b'-') {
        cursor.end()?;
        let first = Date::from_calendar_date(year, Month::January, 1).ok()?;
        let next = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
        return Some((midnight(first), midnight(next)));
    }
    let month = Month::try_from(u8::try_from(cursor.digits(2)?).ok()?).ok()?;
    if !cursor.eat(b'-') {
        cursor.end()?;
        let first = Date::from_calendar_date(year, month, 1).ok()?;
        let next = match month {
            Month::December => Date::from_calendar_date(year + 1, Month::January, 1).ok()?,
            _ => Date::from_calendar_date(year, month.next(), 1).ok()?,
        };
        return Some((midnight(first), midnight(next)));
    }
    let day = Date::from_calendar_date(year, month, u8::try_from(cursor.digits(2)?).ok()?).ok()?;
    if !cursor.eat(b'T') {
        cursor.end()?;
        return Some((midnight(day), midnight(day.next_day()?)));
    }
    let hour = u8::try_from(cursor.digits(2)?).ok()?;
    cursor.eat(b':').then_some(())?;
    let minute = u8::try_from(cursor.digits(2)?).ok()?;
    let mut second = 0u8;
    let mut nanos = 0u32;
    let mut width = Duration::MINUTE;
    if cursor.eat(b':') {
        second = u8::try_from(cursor.digits(2)?).ok()?;
        width = Duration::SECOND;
        if cursor.eat(b'.') {
            let fraction = cursor.fraction()?;
            // The value's precision sets the width: `.1` is a tenth of a second. Digits past
            // the ninth cannot be represented and change neither end beyond a nanosecond.
            let kept = &fraction[..fraction.len().min(9)];
            let scale = 10u32.pow(u32::try_from(9 - kept.len()).ok()?);
            nanos = kept.parse::<u32>().ok()? * scale;
            width = Duration::nanoseconds(i64::from(scale));
        }
    }
    let leap = second == 60;
    if leap {
        second = 59;
        nanos = 999_999_000;
        width = Duration::MICROSECOND;
    }
    let offset = cursor.zone()?;
    cursor.end()?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    let low = PrimitiveDateTime::new(day, time)
        .assume_offset(offset)
        .to_offset(UtcOffset::UTC);
    let high = low.checked_add(width)?;
    Some((floor_micros(low), ceil_micros(high)))
}

fn midnight(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()
}

/// The instant truncated to its microsecond.
pub fn floor_micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

/// The first whole microsecond at or after the instant.
fn ceil_micros(at: OffsetDateTime) -> OffsetDateTime {
    let floor = floor_micros(at);
    if floor == at {
        at
    } else {
        floor + Duration::MICROSECOND
    }
}

/// Reads a date text left to right.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<i32> {
        let digits = self.rest().get(..n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += n;
        digits
            .iter()
            .try_fold(0i32, |acc, d| Some(acc * 10 + i32::from(d - b'0')))
    }

    /// One or more ASCII digits, as written.
    fn fraction(&mut self) -> Option<&'a str> {
        let len = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if len == 0 {
            return None;
        }
        let start = self.at;
        self.at += len;
        self.text.get(start..self.at)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.rest().first() == Some(&byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// `Z`, `±hh:mm` (at most ±14:00, as FHIR allows), or nothing (UTC).
    fn zone(&mut self) -> Option<UtcOffset> {
        if self.eat(b'Z') || self.rest().is_empty() {
            return Some(UtcOffset::UTC);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.digits(2)?;
        self.eat(b':').then_some(())?;
        let minutes = self.digits(2)?;
        if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
            return None;
        }
        UtcOffset::from_hms(
            i8::try_from(sign * hours).ok()?,
            i8::try_from(sign * minutes).ok()?,
            0,
        )
        .ok()
    }

    fn end(&self) -> Option<()> {
        self.rest().is_empty().then_some(())
    }
}
