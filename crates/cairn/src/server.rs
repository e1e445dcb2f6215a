//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api_http::{AccessControl, HttpConfig, RateLimit};
use audit_chain::{AuditTrail, Sequencer};
use phi_crypto::Vault;
use poem::Server;
use poem::listener::{Acceptor, AcceptorExt, Listener, TcpListener};
use records::{RandomIds, Records, SystemClock};
use store_sql::{GroupCommit, SqlStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::store::{AUDIT_WRITERS, open_audit_store, open_serving_store};
use crate::tls::{self, TlsAcceptor};

/// A kept-alive connection with no request for this long is closed, so idle clients cannot
/// hold sockets (and their buffers) indefinitely.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(75);

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on (useful when the configured port was 0).
    pub local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    revocations: JoinHandle<()>,
    sequencing: JoinHandle<()>,
    sequencer: Sequencer,
    store: SqlStore,
    audit_store: SqlStore,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish (up to the grace period),
    /// then closes the database pool.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(trigger) = self.shutdown.take() {
            // The receiver is gone only if the server already stopped: nothing left to signal.
            let _ = trigger.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops (after [`Running::stop`] or a failure).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.task.await.context("the server task failed")?;
        self.revocations.abort();
        self.sequencing.abort();
        // Sequence and sign everything the last requests recorded, so the log's tail is
        // covered by a checkpoint when this instance stops. The periodic task's last round may
        // still be running (it is a task of its own): wait for it rather than skip.
        match self
            .sequencer
            .drain(&self.audit_store, time::OffsetDateTime::now_utc())
            .await
        {
            Ok(sequenced) => {
                tracing::info!(sequenced, "audit log sequenced and signed at shutdown")
            }
            Err(err) => tracing::error!(error = %err, "cannot sequence the audit log at shutdown"),
        }
        self.audit_store.close().await;
        self.store.close().await;
        result.context("the HTTP server failed")
    }

    /// Takes the shutdown trigger so a signal handler can own it (`None` if already taken).
    /// Dropping it unsent does not stop the server.
    pub fn take_shutdown_trigger(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

/// Opens the store, binds the listener and serves until stopped.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store = open_serving_store(config).await?;
    // The embedded default creates its keyring on first start; a production (Postgres)
    // deployment must be given one, so a missing key is never silently replaced.
    let master = crate::keys::server_master_keys(config, &store).await?;
    let gate = gate(master.as_ref())?;
    let access = access_control(config, &store, gate.clone());
    // Serve nothing before the revocation list is known.
    access
        .refresh_revocations()
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("cannot read the token revocation list")?;
    let revocations = tokio::spawn(keep_revocations_fresh(
        access.clone(),
        Duration::from_millis(config.revocation_poll_ms),
    ));
    let audit_store = open_audit_store(config).await?;
    let signer = crate::audit_log::signer(config, master.as_ref())?;
    // Reads and refusals share commits; writes put their entries in their own transaction.
    let audit_trail: Arc<dyn AuditTrail> = if crate::audit_log::unaudited_benchmark() {
        tracing::warn!(
            "CAIRN_UNAUDITED_BENCHMARK: reads and refusals are NOT recorded (benchmark build)"
        );
        Arc::new(crate::audit_log::Unrecorded)
    } else {
        Arc::new(GroupCommit::start(
            Arc::new(audit_store.clone()),
            usize::try_from(AUDIT_WRITERS).unwrap_or(1),
        ))
    };
    let sequencer = Sequencer::new(config.audit_origin(), Arc::new(signer));
    let sequencing = tokio::spawn(crate::audit_log::keep_sequencing(
        sequencer.clone(),
        Arc::new(audit_store.clone()),
        Duration::from_millis(config.audit_sequence_ms),
    ));
    let vault = Vault::new(Arc::new(store.clone()), master);
    let records = Records::new(
        Arc::new(store.clone()),
        vault,
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        audit_trail,
    )
    .guarded_by(gate);
    // Rows made by older index rules would give wrong answers: make them anew first.
    if let Some(report) = records
        .ensure_index_current()
        .await
        .context("cannot bring the search index up to date")?
    {
        tracing::info!(
            from_generation = report.from_generation,
            to_generation = records::index::INDEX_GENERATION,
            reindexed = report.reindexed,
            moved_on = report.moved_on,
            unreadable = report.unreadable,
            "the search index was made anew by the current rules"
        );
    }
    let http = HttpConfig {
        body_limit: config.body_limit,
        public_base_url: config.public_base_url.clone(),
        docs: config.docs,
        tls: config.tls.is_some(),
        max_header_bytes: config.max_header_bytes,
        request_timeout: Duration::from_secs(config.request_timeout_seconds),
        max_bundle_entries: config.max_bundle_entries,
    };
    // Read the certificate before binding: a bad one must stop start-up, not the first client.
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let app = api_http::app(
        records,
        access,
        sequencer.clone(),
        Arc::new(store.clone()),
        &http,
    );
    let tcp = TcpListener::bind(config.listen.clone())
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let acceptor = match tls {
        Some(tls) => TlsAcceptor::new(tcp, tls).boxed(),
        None => tcp.boxed(),
    };
    let local_addr = acceptor
        .local_addr()
        .iter()
        .find_map(|addr| addr.as_socket_addr().copied())
        .context("the listener has no socket address")?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .run_with_graceful_shutdown(
                app,
                async move {
                    // Only a sent signal stops the server; a dropped trigger leaves it running.
                    if stopped.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                },
                Some(grace),
            )
            .await
    });
    tracing::info!(%local_addr, backend = ?store.backend(), tls = config.tls.is_some(), "cairn is serving");
    Ok(Running {
        local_addr,
        shutdown: Some(shutdown),
        task,
        revocations,
        sequencing,
        sequencer,
        store,
        audit_store,
    })
}

/// The gate of this server's tokens: its signing key from the keyring, the revocation list
/// from the database, the configured rate limit.
/// The access policy over tokens signed with the keyring's token key: the core decides every
/// request with it, the HTTP front authenticates with it.
fn gate(master: &dyn phi_crypto::MasterKeys) -> anyhow::Result<access::Gate> {
    let key = access::SigningKey::from_seed(master.keyring().token_signing_seed())?;
    Ok(access::Gate::new(key.verifying_key())?)
}

fn access_control(config: &Config, store: &SqlStore, gate: access::Gate) -> AccessControl {
    AccessControl::new(
        gate,
        Arc::new(store.clone()),
        RateLimit {
            per_second: f64::from(config.rate_limit_per_second),
            burst: f64::from(config.rate_limit_burst),
        },
    )
}

/// Re-reads the revocation list whenever it changed, every `every`. A failed read keeps the
/// last list and is retried; it is logged once per failure streak.
async fn keep_revocations_fresh(access: AccessControl, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match access.refresh_revocations().await {
            Ok(()) => failing = false,
            Err(err) if !failing => {
                failing = true;
                tracing::error!(error = %err, "cannot re-read the token revocation list");
            }
            Err(_) => {}
        }
    }
}
