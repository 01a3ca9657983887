//! ACME (RFC 8555) certificates over HTTP-01, with instant-acme.
//!
//! One task per certificate (the sorted names of an organization's `tls.acme`). At start it
//! loads the certificate stored on disk (served at once), then orders a new one when there is
//! none or when a third of its lifetime is left (`tls.acme.renew_before` to change it). The
//! HTTP-01 tokens are put in the snapshot's [`AcmeStore`], which every plain HTTP listener
//! answers at `/.well-known/acme-challenge/<token>`. A failed order is tried again after
//! `retry_base`, doubling up to `retry_max`; the previous certificate keeps serving meanwhile.
//! Progress is logged and kept in the store for the admin API.
//!
//! Storage (`tls.acme.storage`, relative to gateway.yaml): `accounts/<email>@<directory
//! host>.json` (the account key), `<first name>/cert.pem` and `<first name>/key.pem`; keys are
//! written with mode 0600.
//!
//! On a node of a cluster ([`crate::cluster_certs`]) an order is made once for the cluster: a
//! node whose certificate is due takes the lock `cratopus:acme:lock:<first name>` (refreshed
//! while the order runs), writes its challenges to Redis too (any node the CA reaches answers
//! them), stores the certificate for every node and announces it; a node that finds the lock
//! taken waits and is woken when the certificate arrives. A stored certificate counts as just
//! issued everywhere: no node orders again before `retry_max` after it was written.

use crate::cluster_certs::Cluster;
use cratopus_config::cluster_certs::AcmeKeyType;
use cratopus_config::files::read_text_limited;
use cratopus_config::{AcmeGatewayConfig, acme_directory_url, load::resolve_path};
use cratopus_core::Engine;
use cratopus_core::tls::{AcmeCert, AcmeStore, CertMeta, certified_key_from_pem};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Watches the config for organizations with `tls.acme` and runs one task per certificate
/// (coordinated with the other nodes of `cluster`, if any).
pub fn start(engine: Arc<Engine>, cluster: Option<Arc<Cluster>>) {
    tokio::spawn(async move {
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut seen = 0;
        loop {
            let snap = engine.snapshot();
            if snap.version != seen {
                seen = snap.version;
                running.retain(|_, h| !h.is_finished());
                for want in &snap.tls.acme_wants {
                    // A running task looks at the new config at once (a new key type, say).
                    want.cert.changed.notify_waiters();
                    let key = want.cert.domains.join(",");
                    running
                        .entry(key)
                        .or_insert_with(|| tokio::spawn(worker(engine.clone(), want.cert.clone(), cluster.clone())));
                }
            }
            drop(snap);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn set_status(cert: &AcmeCert, f: impl FnOnce(&mut cratopus_core::tls::AcmeStatus)) {
    if let Ok(mut s) = cert.status.lock() {
        f(&mut s);
    }
}

/// When a certificate with `meta` is due for renewal.
fn renew_at(meta: &CertMeta, renew_before: Option<Duration>) -> SystemTime {
    let (Some(start), Some(end)) = (meta.not_before, meta.not_after) else {
        return SystemTime::now();
    };
    let lifetime = end.duration_since(start).unwrap_or_default();
    let before = renew_before.unwrap_or(lifetime / 3);
    end.checked_sub(before).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn storage_dir(gateway_file: &Path, settings: &AcmeGatewayConfig) -> PathBuf {
    resolve_path(gateway_file, &settings.storage)
}

/// Names are checked domain names, so they are safe as directory names.
fn cert_dir(storage: &Path, domains: &[String]) -> PathBuf {
    storage.join(domains.first().map_or("default", String::as_str))
}

/// How often a node that found the cluster's lock taken looks again (it is woken sooner when
/// the certificate arrives).
const LOCK_POLL: Duration = Duration::from_secs(2);

/// How long a node of a cluster that just started waits to have read the cluster's store before
/// it decides whether to order (with Redis down it goes on: the lock then fails and is retried).
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(10);

/// The certificate `cert` serves now, as the gateway reads it.
fn serving(cert: &AcmeCert) -> Option<CertMeta> {
    let ck = cert.current.load_full()?;
    Some(CertMeta::of(ck.cert.first().map(|c| c.as_ref()).unwrap_or_default()))
}

/// Whether the key of `ck` is of `key_type` (the curve's scheme is the only one it can sign with).
fn has_key_type(ck: &rustls::sign::CertifiedKey, key_type: AcmeKeyType) -> bool {
    let scheme = match key_type {
        AcmeKeyType::EcdsaP256 => rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        AcmeKeyType::EcdsaP384 => rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
    };
    ck.key.choose_scheme(&[scheme]).is_some()
}

/// Waits `wait`, or less when another node's certificate for `cert` arrives.
async fn nap(cert: &AcmeCert, wait: Duration) {
    tokio::select! {
        _ = cert.changed.notified() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

async fn worker(engine: Arc<Engine>, cert: Arc<AcmeCert>, cluster: Option<Arc<Cluster>>) {
    let names = cert.domains.join(",");
    let (file, settings) = {
        let snap = engine.snapshot();
        (snap.config.file.clone(), snap.config.gateway.tls.acme.clone())
    };
    let dir = cert_dir(&storage_dir(&file, &settings), &cert.domains);
    if let Some((ck, meta)) = load_stored(&dir).await
        && cert.domains.iter().all(|d| meta.names.contains(d))
    {
        // Unless the cluster's newer one was adopted meanwhile.
        let newer_held = serving(&cert).is_some_and(|m| m.not_after >= meta.not_after);
        if !newer_held {
            cert.current.store(Some(ck));
            set_status(&cert, |s| {
                s.state = "valid";
                s.not_after = meta.not_after;
            });
        }
        tracing::info!(names = %names, dir = %dir.display(), "ACME certificate loaded from disk");
    }
    let first = cert.domains.first().cloned().unwrap_or_default();
    if let Some(c) = &cluster {
        c.first_sync(FIRST_SYNC_WAIT).await;
    }
    let mut failures = 0u32;
    let mut quiet_until = SystemTime::UNIX_EPOCH;
    loop {
        let snap = engine.snapshot();
        let Some(want) = snap
            .tls
            .acme_wants
            .iter()
            .find(|w| Arc::ptr_eq(&w.cert, &cert))
            .cloned()
        else {
            // No organization asks for these names any more.
            return;
        };
        let settings = snap.config.gateway.tls.acme.clone();
        let file = snap.config.file.clone();
        let store = snap.tls.acme.clone();
        drop(snap);
        let now = SystemTime::now();
        // The certificate served: loaded from disk, ordered here, or adopted from the cluster.
        let meta = serving(&cert);
        // A certificate of the cluster's store counts as just issued everywhere.
        let quiet = match cluster.as_ref().and_then(|c| c.stored_at(&first, &cert.domains)) {
            Some(at) if meta.is_some() => quiet_until.max(at + settings.retry_max.0),
            _ => quiet_until,
        };
        // A certificate with another key type than the one asked for is due now.
        let right_key = cert
            .current
            .load()
            .as_ref()
            .is_some_and(|ck| has_key_type(ck, want.key_type));
        let due = meta
            .as_ref()
            .filter(|_| right_key)
            .map_or(now, |m| renew_at(m, settings.renew_before.map(|d| d.0)))
            .max(quiet);
        set_status(&cert, |s| s.renew_at = meta.as_ref().map(|_| due));
        if due > now {
            // Look again at least every minute: the config may have changed.
            let wait = due.duration_since(now).unwrap_or_default().min(Duration::from_secs(60));
            nap(&cert, wait).await;
            continue;
        }
        // In a cluster, one node orders; the others wait for its certificate.
        let lock = match &cluster {
            None => None,
            Some(c) => match c.lock(&first).await {
                Ok(Some(lock)) => {
                    // Another node may have stored one just before we took the lock.
                    c.fetch(&first).await;
                    if serving(&cert).map(|m| m.not_after) != meta.as_ref().map(|m| m.not_after) {
                        c.unlock(lock).await;
                        continue;
                    }
                    Some(lock)
                }
                Ok(None) => {
                    set_status(&cert, |s| s.state = if meta.is_some() { "renewing" } else { "issuing" });
                    tracing::debug!(names = %names, "another node of the cluster orders this certificate");
                    nap(&cert, LOCK_POLL).await;
                    continue;
                }
                Err(e) => {
                    failures = failed(&cert, &names, &settings, failures, e).await;
                    continue;
                }
            },
        };
        let renewing = meta.is_some();
        set_status(&cert, |s| s.state = if renewing { "renewing" } else { "issuing" });
        tracing::info!(names = %names, organization = %want.org, renewing, key_type = ?want.key_type, clustered = lock.is_some(), "ordering an ACME certificate");
        let order = issue(
            &file,
            &settings,
            &want.email,
            &cert.domains,
            want.key_type,
            &store,
            cluster.as_deref(),
        );
        let result = match (&cluster, &lock) {
            (Some(c), Some(l)) => {
                tokio::select! {
                    r = order => r,
                    // `keep` never ends; the arm only completes the types.
                    () = c.keep(l) => Err("the ACME lock keeper stopped".to_string()),
                }
            }
            _ => order.await,
        };
        let error = match result {
            Ok((chain, key)) => match certified_key_from_pem(&chain, &key) {
                Ok((ck, m)) => {
                    let dir = cert_dir(&storage_dir(&file, &settings), &cert.domains);
                    if let Err(e) = save(&dir, &chain, &key).await {
                        tracing::warn!(names = %names, error = %e, "cannot store the ACME certificate; it is served from memory");
                    }
                    cert.current.store(Some(ck));
                    if let Some(c) = &cluster
                        && let Err(e) = c.publish_acme(&cert.domains, &chain, &key, m.not_after).await
                    {
                        tracing::warn!(names = %names, error = %e, "cannot store the ACME certificate for the cluster; the other nodes order their own later");
                    }
                    failures = 0;
                    set_status(&cert, |s| {
                        s.state = "valid";
                        s.not_after = m.not_after;
                        s.last_error = None;
                        s.next_attempt = None;
                        s.failures = 0;
                        s.issued += 1;
                    });
                    tracing::info!(
                        names = %names,
                        not_after = ?m.not_after.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
                        "ACME certificate issued and served"
                    );
                    // However `renew_before` is set, not again before `retry_max`.
                    quiet_until = SystemTime::now() + settings.retry_max.0;
                    None
                }
                Err(e) => Some(format!("the issued certificate is unusable: {e}")),
            },
            Err(e) => Some(e),
        };
        // Released once the certificate is stored for the cluster (or the order failed).
        if let (Some(c), Some(l)) = (&cluster, lock) {
            c.unlock(l).await;
        }
        if let Some(e) = error {
            failures = failed(&cert, &names, &settings, failures, e).await;
        }
    }
}

/// Records a failure and sleeps the backoff; returns the new failure count.
async fn failed(cert: &AcmeCert, names: &str, settings: &AcmeGatewayConfig, failures: u32, error: String) -> u32 {
    let failures = failures.saturating_add(1);
    let wait = settings
        .retry_base
        .0
        .saturating_mul(2u32.saturating_pow(failures - 1))
        .min(settings.retry_max.0);
    let serving = cert.current.load().is_some();
    set_status(cert, |s| {
        s.state = "failed";
        s.last_error = Some(error.clone());
        s.next_attempt = Some(SystemTime::now() + wait);
        s.failures = failures;
    });
    tracing::warn!(names = %names, error = %error, retry_in = ?wait, failures, still_serving_previous = serving, "ACME order failed");
    tokio::time::sleep(wait).await;
    failures
}

async fn load_stored(dir: &Path) -> Option<(Arc<rustls::sign::CertifiedKey>, CertMeta)> {
    let dir = dir.to_path_buf();
    let (chain, key) = tokio::task::spawn_blocking(move || {
        Some((
            read_text_limited(&dir.join("cert.pem")).ok()?,
            read_text_limited(&dir.join("key.pem")).ok()?,
        ))
    })
    .await
    .ok()??;
    certified_key_from_pem(&chain, &key).ok()
}

async fn save(dir: &Path, chain: &str, key: &str) -> std::io::Result<()> {
    let (dir, chain, key) = (dir.to_path_buf(), chain.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        crate::atomic_file::write(&dir.join("key.pem"), key.as_bytes(), Some(0o600))?;
        crate::atomic_file::write(&dir.join("cert.pem"), chain.as_bytes(), Some(0o644))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The account for `email` at the directory: loaded from storage, or created and stored.
async fn account(gateway_file: &Path, settings: &AcmeGatewayConfig, email: &str) -> Result<Account, String> {
    let url = acme_directory_url(&settings.directory)
        .ok_or_else(|| format!("unknown ACME directory `{}`", settings.directory))?
        .to_string();
    let builder = || match &settings.directory_ca {
        Some(ca) => Account::builder_with_root(resolve_path(gateway_file, &ca.value)),
        None => Account::builder(),
    };
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().replace(':', "_")))
        .unwrap_or_else(|| "directory".into());
    let safe_email: String = email
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@.-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = storage_dir(gateway_file, settings)
        .join("accounts")
        .join(format!("{safe_email}@{host}.json"));
    let stored = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || cratopus_config::files::read_limited(&path).ok())
            .await
            .ok()
            .flatten()
    };
    if let Some(bytes) = stored
        && let Ok(creds) = serde_json::from_slice::<AccountCredentials>(&bytes)
    {
        let b = builder().map_err(|e| format!("ACME client: {e}"))?;
        return b
            .from_credentials(creds)
            .await
            .map_err(|e| format!("stored ACME account: {e}"));
    }
    let contact = format!("mailto:{email}");
    let (account, creds) = builder()
        .map_err(|e| format!("ACME client: {e}"))?
        .create(
            &NewAccount {
                contact: &[&contact],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            url.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating the ACME account at {url}: {e}"))?;
    let json = serde_json::to_vec_pretty(&creds).map_err(|e| e.to_string())?;
    let saved = tokio::task::spawn_blocking(move || {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        crate::atomic_file::write(&path, &json, Some(0o600))
    })
    .await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!("cannot store the ACME account key; a new account is made at the next start");
    }
    tracing::info!(email = %email, directory = %url, "ACME account created");
    Ok(account)
}

/// Orders a certificate for `domains` over HTTP-01; returns the PEM chain and key.
async fn issue(
    gateway_file: &Path,
    settings: &AcmeGatewayConfig,
    email: &str,
    domains: &[String],
    key_type: AcmeKeyType,
    store: &AcmeStore,
    cluster: Option<&Cluster>,
) -> Result<(String, String), String> {
    let account = account(gateway_file, settings, email).await?;
    let identifiers: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut tokens = Vec::new();
    let result = async {
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(format!("authorization is {other:?}")),
                }
                let mut ch = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or("the ACME server offers no HTTP-01 challenge")?;
                let key_auth = ch.key_authorization();
                store.set_challenge(&ch.token, key_auth.as_str());
                tokens.push(ch.token.clone());
                if let Some(c) = cluster {
                    c.share_challenge(&ch.token, key_auth.as_str()).await?;
                }
                ch.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
            }
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retry).await.map_err(|e| format!("order: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!(
                "the order is {status:?}: {}",
                challenge_errors(&mut order).await
            ));
        }
        let (csr, key) = csr(domains, key_type)?;
        order.finalize_csr(&csr).await.map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        Ok((chain, key))
    }
    .await;
    for t in &tokens {
        store.clear_challenge(t);
        if let Some(c) = cluster {
            c.clear_challenge(t).await;
        }
    }
    result
}

/// A certificate signing request for `domains` with a new key of `key_type`: the CSR (DER) and
/// the key (PEM).
fn csr(domains: &[String], key_type: AcmeKeyType) -> Result<(Vec<u8>, String), String> {
    let alg = match key_type {
        AcmeKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        AcmeKeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| format!("new key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| format!("CSR: {e}"))?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// What the ACME server said about the failed challenges of an order.
async fn challenge_errors(order: &mut instant_acme::Order) -> String {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(Ok(authz)) = authzs.next().await {
        for c in &authz.challenges {
            if let Some(e) = &c.error {
                out.push(e.to_string());
            }
        }
    }
    if out.is_empty() {
        "no reason given".into()
    } else {
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let meta = CertMeta {
            names: vec![],
            not_before: Some(start),
            not_after: Some(start + Duration::from_secs(90 * 86400)),
        };
        assert_eq!(renew_at(&meta, None), start + Duration::from_secs(60 * 86400));
        assert_eq!(
            renew_at(&meta, Some(Duration::from_secs(86400))),
            start + Duration::from_secs(89 * 86400)
        );
    }
}
