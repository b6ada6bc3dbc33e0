//! Fixing locations: the joiner's side of the negotiation, the gateway's
//! side (one grant per PeerId until it expires, a quota per network, slots
//! freed on disconnect), renegotiation when our location expires, and what
//! comes back from the store at start.

use super::*;

impl RingState {
    /// Brings back what the store kept (see [`crate::record`]): our
    /// location, if it still verifies and has not expired; the values we
    /// committed to with listed gateways; on a gateway, the grants that have
    /// not expired. Call once, after [`set_nonce_key`](Self::set_nonce_key)
    /// and before any event. Records that are no longer of use are
    /// forgotten ([`StoreEffect::Forget`]); a gateway without a stored location
    /// draws a fresh one and stores it.
    pub fn restore(&mut self, records: Vec<StoredRecord>, now: Instant, actions: &mut Out) {
        let unix = self.unix_now(now);
        let mut own_restored = false;
        for record in records {
            match record {
                StoredRecord::Own(t) => {
                    let valid = t.expires > unix
                        && t.verify(&self.local, &self.config.gateways, &self.network, unix)
                            .is_ok();
                    if valid {
                        let location = t.location();
                        self.location = Some(location);
                        self.transcript = Some(t);
                        self.list_dirty = true;
                        own_restored = true;
                        actions.push(Output::Event(Event::Joined { location }));
                    } else {
                        actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Own)));
                    }
                }
                StoredRecord::Secret { gateway, value } => {
                    if self.config.gateways.listed.contains(&gateway) {
                        self.join_secrets.insert(gateway, value);
                    } else {
                        actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Secret(
                            gateway,
                        ))));
                    }
                }
                StoredRecord::Grant(grant) => {
                    if self.gateway && grant.challenge.expires > unix {
                        self.keep_grant(grant, actions);
                    } else {
                        actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Grant(
                            grant.joiner,
                        ))));
                    }
                }
            }
        }
        if self.gateway && !own_restored {
            // Drawn again with the nonce source now in force (the
            // constructor's came from the seed), and kept.
            let t = self.self_negotiate(now);
            self.location = Some(t.location());
            self.transcript = Some(t.clone());
            actions.push(Output::Effect(StoreEffect::Store(StoredRecord::Own(t))));
        }
    }

    pub(super) fn maybe_start_join(&mut self, now: Instant, actions: &mut Out) {
        if self.location.is_some() || self.joining.is_some() || self.join_retry_at.is_some() {
            return;
        }
        let gateways: Vec<PeerId> = self
            .connected
            .keys()
            .filter(|p| self.config.gateways.listed.contains(p))
            .copied()
            .collect();
        if gateways.is_empty() {
            return;
        }
        // A gateway we committed to a value with holds a grant for that
        // value: finish there.
        let gateway = match gateways.iter().find(|g| self.join_secrets.contains_key(g)) {
            Some(g) => *g,
            None => gateways[self.rng.random_range(0..gateways.len())],
        };
        let value = match self.join_secrets.get(&gateway) {
            Some(value) => *value,
            None => {
                let value = self.nonce();
                self.join_secrets.insert(gateway, value);
                // Stored before the commitment leaves: after a restart we
                // commit to the same value, which is what the gateway's
                // grant is for.
                actions.push(Output::Effect(StoreEffect::Store(StoredRecord::Secret {
                    gateway,
                    value,
                })));
                value
            }
        };
        let secret = JoinerSecret::new(self.local, value);
        actions.push(Output::Send {
            to: gateway,
            message: Message::JoinCommit {
                commitment: secret.commitment(),
            },
        });
        self.joining = Some(Joining {
            gateway,
            secret,
            deadline: now + self.config.request_timeout,
        });
    }

    pub(super) fn on_join_challenge(
        &mut self,
        from: PeerId,
        challenge: Challenge,
        now: Instant,
        actions: &mut Out,
    ) {
        let Some(joining) = self.joining.take_if(|j| j.gateway == from) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let unix = self.unix_now(now);
        match joining.secret.complete(from, &challenge, &self.network) {
            Ok(transcript) if transcript.expires > unix => {
                self.join_secrets.remove(&from);
                actions.push(Output::Effect(StoreEffect::Store(StoredRecord::Own(
                    transcript.clone(),
                ))));
                actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Secret(from))));
                self.joined(transcript, now, actions);
            }
            Ok(_) => {
                // The grant for this value expired by our clock: commit to
                // a new value next time.
                self.join_secrets.remove(&from);
                actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Secret(from))));
                self.join_retry_at = Some(now + self.config.maintenance_interval);
            }
            Err(error) => {
                self.join_retry_at = Some(now + self.config.maintenance_interval);
                actions.push(Output::Report {
                    peer: from,
                    error: PeerError::Protocol(format!("ring join challenge: {error}")),
                });
            }
        }
    }

    /// Our location is fixed by `transcript`: announce it to every
    /// connected peer, take those that announced theirs as neighbors, and
    /// look for our successor and predecessor.
    pub(super) fn joined(&mut self, transcript: Transcript, now: Instant, actions: &mut Out) {
        let location = transcript.location();
        self.location = Some(location);
        self.transcript = Some(transcript.clone());
        for peer in self.connected.keys() {
            actions.push(Output::Send {
                to: *peer,
                message: Message::Announce(transcript.clone()),
            });
        }
        actions.push(Output::Event(Event::Joined { location }));
        self.list_dirty = true;
        self.connect_budget = 2 * self.config.target_degree;
        let announced: Vec<(PeerId, Location)> = self
            .known
            .iter()
            .filter(|(p, _)| self.connected.contains_key(*p) && !self.neighbors.contains_key(*p))
            .map(|(p, l)| (*p, *l))
            .collect();
        for (peer, l) in announced {
            self.consider(peer, l, now, actions);
        }
        self.check_adjacency(now, actions);
    }

    /// Our location expired: tell every neighbor we leave (the connections
    /// stay), and fix a new one — a gateway by itself, a node through a
    /// gateway. Our peers' pins of the old location end with it.
    pub(super) fn relocate(&mut self, now: Instant, actions: &mut Out) {
        tracing::info!(location = ?self.location, "ring location expired; negotiating a new one");
        let neighbors: Vec<(PeerId, Location)> = self
            .neighbors
            .iter()
            .map(|(p, n)| (*p, n.location))
            .collect();
        for (peer, location) in neighbors {
            self.remove_neighbor(&peer, actions);
            self.leaving.insert(
                peer,
                Leaving {
                    location,
                    until: now + LINK_DRAIN,
                    initiator: false,
                },
            );
            actions.push(Output::Send {
                to: peer,
                message: Message::Leave,
            });
        }
        self.location = None;
        self.transcript = None;
        self.pending_connects.clear();
        self.expected.clear();
        actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Own)));
        if self.gateway {
            let transcript = self.self_negotiate(now);
            actions.push(Output::Effect(StoreEffect::Store(StoredRecord::Own(
                transcript.clone(),
            ))));
            self.joined(transcript, now, actions);
        } else {
            self.join_retry_at = None;
            self.maybe_start_join(now, actions);
        }
    }

    /// A gateway's answer to `from`'s commitment: the grant `from` holds,
    /// if it holds one for this commitment; a refusal if it holds one for
    /// another; otherwise a new grant, within the network's quota and the
    /// slots free.
    pub(super) fn on_join_commit(
        &mut self,
        from: PeerId,
        commitment: [u8; 32],
        now: Instant,
        actions: &mut Out,
    ) {
        let refuse = |reason: String| Output::Send {
            to: from,
            message: Message::JoinRefused { reason },
        };
        if !self.gateway {
            self.stats.joins_refused += 1;
            actions.push(refuse("not a gateway".into()));
            return;
        }
        let unix = self.unix_now(now);
        if let Some(grant) = self.grants.get(&from).cloned() {
            if grant.challenge.expires > unix {
                if grant.commitment != commitment {
                    self.stats.joins_refused += 1;
                    self.stats.joins_refused_rebind += 1;
                    actions.push(refuse(format!(
                        "this PeerId holds a location from another commitment until unix time {}",
                        grant.challenge.expires
                    )));
                    return;
                }
                if !self.has_join_slot(now) {
                    self.stats.joins_refused += 1;
                    actions.push(refuse("too many joins in progress".into()));
                    return;
                }
                self.take_join_slot(from, now);
                self.stats.joins_repeated += 1;
                actions.push(Output::Send {
                    to: from,
                    message: Message::JoinChallenge(grant.challenge),
                });
                return;
            }
            self.drop_grant(&from, actions);
        }
        if !self.has_join_slot(now) {
            self.stats.joins_refused += 1;
            actions.push(refuse("too many joins in progress".into()));
            return;
        }
        if let Some(prefix) = self.connected.get(&from).copied().flatten()
            && !self.spend_join_quota(prefix, now)
        {
            self.stats.joins_refused += 1;
            self.stats.joins_refused_quota += 1;
            actions.push(refuse(format!(
                "{} new locations were granted to {prefix} in the last {:?}",
                self.config.max_joins_per_prefix, self.config.join_quota_window
            )));
            return;
        }
        let value = self.nonce();
        let challenge = Challenge::answer(
            &self.keypair,
            &self.network,
            &from,
            &commitment,
            value,
            self.expiry(now),
        );
        let grant = Grant {
            joiner: from,
            commitment,
            challenge: challenge.clone(),
        };
        // Stored before the challenge leaves, so a restart cannot answer
        // this PeerId with another value.
        actions.push(Output::Effect(StoreEffect::Store(StoredRecord::Grant(
            grant.clone(),
        ))));
        self.keep_grant(grant, actions);
        self.take_join_slot(from, now);
        self.stats.joins_served += 1;
        actions.push(Output::Send {
            to: from,
            message: Message::JoinChallenge(challenge),
        });
    }

    /// Whether a negotiation slot is free (after forgetting joiners whose
    /// grace ended).
    fn has_join_slot(&mut self, now: Instant) -> bool {
        if self.joiners.len() >= self.config.max_pending_joins {
            self.expire_joiners(now);
        }
        self.joiners.len() < self.config.max_pending_joins
    }

    /// `joiner` holds a slot, and its link is protected, for `join_grace`
    /// or until it disconnects.
    fn take_join_slot(&mut self, joiner: PeerId, now: Instant) {
        self.joiners.insert(joiner, now + self.config.join_grace);
        if let Some(n) = self.neighbors.get_mut(&joiner)
            && !n.joiner
        {
            n.joiner = true;
            self.joiner_neighbors += 1;
        }
    }

    /// Counts a new location granted to `prefix`; false if its quota for
    /// the current window is spent.
    fn spend_join_quota(&mut self, prefix: IpPrefix, now: Instant) -> bool {
        let window = self.config.join_quota_window;
        if !self.join_quotas.contains_key(&prefix) && self.join_quotas.len() >= MAX_JOIN_PREFIXES {
            self.join_quotas
                .retain(|_, q| now.saturating_duration_since(q.since) < window);
            if self.join_quotas.len() >= MAX_JOIN_PREFIXES
                && let Some(oldest) = self
                    .join_quotas
                    .iter()
                    .min_by_key(|(_, q)| q.since)
                    .map(|(p, _)| *p)
            {
                self.join_quotas.remove(&oldest);
            }
        }
        let quota = self.join_quotas.entry(prefix).or_insert(Quota {
            since: now,
            served: 0,
        });
        if now.saturating_duration_since(quota.since) >= window {
            *quota = Quota {
                since: now,
                served: 0,
            };
        }
        if quota.served >= self.config.max_joins_per_prefix {
            return false;
        }
        quota.served += 1;
        true
    }

    /// Keeps `grant` (replacing its joiner's), forgetting the grants that
    /// expire first while more than [`MAX_GRANTS`] are held.
    fn keep_grant(&mut self, grant: Grant, actions: &mut Out) {
        self.drop_grant(&grant.joiner, &mut Vec::new());
        self.grant_order
            .insert((grant.challenge.expires, grant.joiner));
        self.grants.insert(grant.joiner, grant);
        while self.grants.len() > MAX_GRANTS {
            let Some((_, joiner)) = self.grant_order.first().copied() else {
                break;
            };
            self.stats.grants_evicted += 1;
            self.drop_grant(&joiner, actions);
        }
    }

    fn drop_grant(&mut self, joiner: &PeerId, actions: &mut Out) {
        if let Some(old) = self.grants.remove(joiner) {
            self.grant_order.remove(&(old.challenge.expires, *joiner));
            actions.push(Output::Effect(StoreEffect::Forget(RecordKey::Grant(
                *joiner,
            ))));
        }
    }
}
