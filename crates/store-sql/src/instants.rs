//! Instants as SQL values that compare as instants on both backends.
//!
//! PostgreSQL keeps `timestamptz`, which compares instants whatever offset they came with.
//! SQLite has no date type: sqlx writes an `OffsetDateTime` as RFC 3339 text in the offset it
//! carries and without trailing zeros in the fraction, so `…T17:00:00-05:00` sorts before
//! `…T20:00:00Z` though it is later, and `.12Z` after `.123Z`. Text compares as instants only when
//! every value is written in one offset at one width, so on SQLite Cairn writes each searchable
//! instant (index dates, `last_updated`, the audit log's `recorded_at`) and each bound it
//! compares them with as
//! `YYYY-MM-DDThh:mm:ss.ffffffZ`: UTC, always six fraction digits. sqlx reads that text back
//! as an `OffsetDateTime` like any other RFC 3339 value. Migration 10 rewrote the values stored
//! before.

use sea_orm::Value;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::connect::Backend;

/// `at` as a value to store or compare with on `backend`.
pub(crate) fn instant(backend: Backend, at: OffsetDateTime) -> Value {
    let utc = at.to_offset(UtcOffset::UTC);
    match backend {
        Backend::Postgres => utc.into(),
        Backend::Sqlite => sqlite_text(utc).into(),
    }
}

/// The fixed-width UTC text of an instant; years outside 0000–9999 (which FHIR cannot write)
/// are clamped to the range's ends so that the text keeps its width and order.
pub(crate) fn sqlite_text(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    let utc = at.to_offset(UtcOffset::UTC);
    match utc.year() {
        year if year < 0 => "0000-01-01T00:00:00.000000Z".to_owned(),
        year if year > 9999 => "9999-12-31T23:59:59.999999Z".to_owned(),
        _ => utc
            .format(&format)
            .unwrap_or_else(|_| "0000-01-01T00:00:00.000000Z".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use time::macros::datetime;

    use super::*;

    #[test]
    fn sqlite_text_is_utc_at_one_width_so_text_order_is_time_order() {
        let instants = [
            datetime!(0001-01-01 00:00 UTC),
            datetime!(2021-02-28 20:30:00 -05:00),
            datetime!(2021-03-01 01:30:00.12 UTC),
            datetime!(2021-03-01 01:30:00.123 UTC),
            datetime!(2021-03-01 07:00:00.123456 +05:30),
            datetime!(2021-03-01 01:30:01 UTC),
            datetime!(9999-12-31 23:59:59 UTC),
        ];
        let texts: Vec<String> = instants.iter().map(|&at| sqlite_text(at)).collect();
        assert_eq!(texts[1], "2021-03-01T01:30:00.000000Z");
        assert_eq!(texts[4], "2021-03-01T01:30:00.123456Z");
        assert!(texts.iter().all(|t| t.len() == 27));
        for pair in texts.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        let parsed =
            OffsetDateTime::parse(&texts[4], &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(parsed, instants[4]);
    }
}
