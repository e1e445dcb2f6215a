//! [`TokenRegistry`] on sea-orm: `token_issuance` (access reviews) and `token_revocation`.

use access::{Issuance, RegistryFailure, RevocationStamp, RevokedIds, TokenRegistry};
use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use time::OffsetDateTime;

use crate::connect::SqlStore;
use crate::tables::{TOKEN_ISSUANCE, TOKEN_REVOCATION, col, name};

const ISSUANCE_COLUMNS: [&str; 9] = [
    "token_id",
    "subject",
    "role",
    "organization",
    "patient",
    "scopes",
    "purpose",
    "issued_at",
    "expires_at",
];

fn failure(err: impl std::error::Error + Send + Sync + 'static) -> RegistryFailure {
    Box::new(err)
}

fn issuance(row: &QueryResult) -> Result<Issuance, DbErr> {
    Ok(Issuance {
        token_id: row.try_get("", "token_id")?,
        subject: row.try_get("", "subject")?,
        role: row.try_get("", "role")?,
        organization: row.try_get("", "organization")?,
        patient: row.try_get("", "patient")?,
        scopes: row.try_get("", "scopes")?,
        purpose: row.try_get("", "purpose")?,
        issued_at: row.try_get("", "issued_at")?,
        expires_at: row.try_get("", "expires_at")?,
        revoked_at: row.try_get("", "revoked_at")?,
    })
}

#[async_trait]
impl TokenRegistry for SqlStore {
    async fn record_issuance(&self, issuance: &Issuance) -> Result<(), RegistryFailure> {
        let insert = Query::insert()
            .into_table(name(TOKEN_ISSUANCE))
            .columns(ISSUANCE_COLUMNS.map(name))
            .values([
                issuance.token_id.clone().into(),
                issuance.subject.clone().into(),
                issuance.role.clone().into(),
                issuance.organization.clone().into(),
                issuance.patient.clone().into(),
                issuance.scopes.clone().into(),
                issuance.purpose.clone().into(),
                issuance.issued_at.into(),
                issuance.expires_at.into(),
            ])
            .map_err(failure)?
            .to_owned();
        self.db.execute(&insert).await.map_err(failure)?;
        Ok(())
    }

    async fn issuances(&self, subject: Option<&str>) -> Result<Vec<Issuance>, RegistryFailure> {
        let mut select = Query::select();
        select
            .columns(ISSUANCE_COLUMNS.map(|c| (name(TOKEN_ISSUANCE), name(c))))
            .expr_as(col(TOKEN_REVOCATION, "revoked_at"), name("revoked_at"))
            .from(name(TOKEN_ISSUANCE))
            .left_join(
                name(TOKEN_REVOCATION),
                col(TOKEN_REVOCATION, "revocation_id")
                    .equals((name(TOKEN_ISSUANCE), name("token_id"))),
            )
            .order_by((name(TOKEN_ISSUANCE), name("issued_at")), Order::Desc)
            .order_by((name(TOKEN_ISSUANCE), name("token_id")), Order::Asc);
        if let Some(subject) = subject {
            select.and_where(col(TOKEN_ISSUANCE, "subject").eq(subject));
        }
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        rows.iter()
            .map(|row| issuance(row).map_err(failure))
            .collect()
    }

    async fn revoke(
        &self,
        ids: &[String],
        at: OffsetDateTime,
        reason: &str,
    ) -> Result<u64, RegistryFailure> {
        let mut added = 0;
        for id in ids {
            let insert = Query::insert()
                .into_table(name(TOKEN_REVOCATION))
                .columns(["revocation_id", "revoked_at", "reason"].map(name))
                .values([id.clone().into(), at.into(), reason.into()])
                .map_err(failure)?
                .on_conflict(
                    OnConflict::column(name("revocation_id"))
                        .do_nothing()
                        .to_owned(),
                )
                .to_owned();
            added += self
                .db
                .execute(&insert)
                .await
                .map_err(failure)?
                .rows_affected();
        }
        Ok(added)
    }

    async fn revocation_stamp(&self) -> Result<RevocationStamp, RegistryFailure> {
        let select = Query::select()
            .expr_as(Func::count(Expr::col(name("seq"))), name("n"))
            .expr_as(Func::max(Expr::col(name("seq"))), name("last"))
            .from(name(TOKEN_REVOCATION))
            .to_owned();
        let Some(row) = self.db.query_one(&select).await.map_err(failure)? else {
            return Ok(RevocationStamp::default());
        };
        let count: i64 = row.try_get("", "n").map_err(failure)?;
        let last: Option<i64> = row.try_get("", "last").map_err(failure)?;
        Ok(RevocationStamp {
            count: u64::try_from(count).unwrap_or_default(),
            last: last.unwrap_or_default(),
        })
    }

    async fn revoked_ids(&self) -> Result<RevokedIds, RegistryFailure> {
        let select = Query::select()
            .column(name("revocation_id"))
            .from(name(TOKEN_REVOCATION))
            .to_owned();
        let rows = self.db.query_all(&select).await.map_err(failure)?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<String>("", "revocation_id"))
            .collect::<Result<Vec<_>, DbErr>>()
            .map_err(failure)?;
        Ok(RevokedIds::new(ids))
    }
}
