//! `switchyard status`, `peers`, `ban`, `unban` and `bans`: clients of a
//! node's HTTP API.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use switchyard::api::{BanEntry, ErrorBody, PeerEntry, RemovedPeer, Status, Unbanned};

use crate::output::outln;

/// GETs `path` from the API at `api` and decodes the JSON answer.
pub async fn get<T: DeserializeOwned>(api: SocketAddr, path: &str) -> anyhow::Result<T> {
    call(reqwest::Method::GET, api, path).await
}

/// Sends `method path` to the API at `api` and decodes the JSON answer; an
/// error answer becomes an error with its message.
pub async fn call<T: DeserializeOwned>(
    method: reqwest::Method,
    api: SocketAddr,
    path: &str,
) -> anyhow::Result<T> {
    let url = format!("http://{api}{path}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .request(method, &url)
        .send()
        .await
        .with_context(|| format!("no node answers at {url} (is it running? see api.listen)"))?;
    let status = response.status();
    if !status.is_success() {
        let message = response
            .json::<ErrorBody>()
            .await
            .map(|b| b.error)
            .unwrap_or_else(|_| status.to_string());
        anyhow::bail!("{url}: {status}: {message}");
    }
    response
        .json::<T>()
        .await
        .with_context(|| format!("{url}: unexpected answer"))
}

/// Prints `GET /status`: a table, or the JSON answer.
pub async fn status(api: SocketAddr, json: bool) -> anyhow::Result<()> {
    if json {
        let value: serde_json::Value = get(api, "/status").await?;
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let s: Status = get(api, "/status").await?;
    outln!("peer id      {}", s.peer_id)?;
    outln!("network      {}", s.network_id)?;
    outln!("version      {}", s.version)?;
    for address in &s.listen_addresses {
        outln!("listening    {address}")?;
    }
    for address in &s.announced_addresses {
        outln!("announcing   {address}")?;
    }
    outln!(
        "peers        {} ({} inbound, {} outbound)",
        s.inbound_peers + s.outbound_peers,
        s.inbound_peers,
        s.outbound_peers
    )?;
    outln!("known peers  {}", s.known_peers)?;
    outln!("uptime       {} s", s.uptime_seconds)?;
    Ok(())
}

/// Prints `GET /peers`: a table, or the JSON answer.
pub async fn peers(api: SocketAddr, json: bool) -> anyhow::Result<()> {
    if json {
        let value: serde_json::Value = get(api, "/peers").await?;
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let peers: Vec<PeerEntry> = get(api, "/peers").await?;
    outln!(
        "{:<52}  {:<8}  {:>5}  {:<15}  software",
        "peer id",
        "dir",
        "score",
        "remote ip"
    )?;
    for p in &peers {
        outln!(
            "{:<52}  {:<8}  {:>5}  {:<15}  {}",
            p.peer_id,
            p.direction,
            p.score.map_or_else(|| "-".into(), |s| s.to_string()),
            p.remote_ip.as_deref().unwrap_or("-"),
            p.software_version
        )?;
    }
    outln!("{} peers", peers.len())?;
    Ok(())
}

/// Bans `peer` for `duration` (`DELETE /peers/{peer}?ban=…`).
pub async fn ban(api: SocketAddr, peer: &str, duration: &str) -> anyhow::Result<()> {
    let path = format!("/peers/{peer}?ban={}", duration.replace(' ', "%20"));
    let removed: RemovedPeer = call(reqwest::Method::DELETE, api, &path).await?;
    outln!(
        "banned {} for {} s{}",
        removed.peer_id,
        removed.banned_seconds.unwrap_or(0),
        if removed.was_connected {
            " (disconnected)"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// Lifts `peer`'s ban (`DELETE /bans/{peer}`).
pub async fn unban(api: SocketAddr, peer: &str) -> anyhow::Result<()> {
    let lifted: Unbanned = call(reqwest::Method::DELETE, api, &format!("/bans/{peer}")).await?;
    outln!("ban of {} lifted", lifted.peer_id)?;
    Ok(())
}

/// Prints `GET /bans` as a table.
pub async fn bans(api: SocketAddr) -> anyhow::Result<()> {
    let bans: Vec<BanEntry> = get(api, "/bans").await?;
    outln!("{:<52}  {:>12}", "peer id", "seconds left")?;
    for ban in &bans {
        outln!("{:<52}  {:>12}", ban.peer_id, ban.remaining_seconds)?;
    }
    outln!("{} bans", bans.len())?;
    Ok(())
}
