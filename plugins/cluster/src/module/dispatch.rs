//! Inbound traffic from peers, routed by channel to the part that handles it.

use super::*;

/// Routes what peers send to the part that handles it.
pub(super) struct Dispatch {
    pub(super) running: Arc<OnceLock<Arc<Running>>>,
}

impl Inbound for Dispatch {
    fn on_message(&self, from: &PeerInfo, channel: Channel, body: Bytes) {
        let Some(r) = self.running.get() else { return };
        match channel {
            Channel::Gossip => r.membership.receive(from.addr, body),
            Channel::Query => match wire::decode(&body, "query message") {
                Ok(QueryMessage::Events(ev)) => r.router.on_events(ev),
                Ok(m) => r.scatter.on_message(from, m),
                Err(e) => tracing::warn!(peer = %from.node_id, "{e}"),
            },
            Channel::Control => match wire::decode(&body, "control message") {
                Ok(ControlMessage::Topic(Topic::Deliver(m))) => r.router.on_deliver(m),
                Ok(other) => {
                    tracing::warn!(peer = %from.node_id, message = ?other, "unexpected one-way control message");
                }
                Err(e) => tracing::warn!(peer = %from.node_id, "{e}"),
            },
            other => {
                tracing::warn!(peer = %from.node_id, channel = ?other, "unexpected one-way message");
            }
        }
    }

    fn on_request(
        &self,
        from: PeerInfo,
        channel: Channel,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let Some(r) = self.running.get().cloned() else {
            return Box::pin(async { Err("this node is still starting".to_string()) });
        };
        Box::pin(async move {
            match channel {
                Channel::Raft => r.raft.handle_rpc(body).await,
                Channel::Control => match wire::decode(&body, "control request")? {
                    ControlMessage::Control(Control::Join(n)) => {
                        tracing::info!(node = %n.node_id, addr = %n.cluster_addr, "admitting a node");
                        r.raft
                            .add_member(n)
                            .await
                            .map(|()| wire::encode(&()))
                            .map_err(|e| e.to_string())
                    }
                    ControlMessage::Topic(Topic::Publish(m)) => {
                        r.router.publish(m).await.map_err(|e| e.to_string())?;
                        Ok(wire::encode(&()))
                    }
                    ControlMessage::Topic(Topic::Deliver(m)) => {
                        r.router.on_deliver(m);
                        Ok(wire::encode(&()))
                    }
                },
                Channel::Query => {
                    let call: QueryCall = wire::decode(&body, "query request")?;
                    r.scatter.on_request(from, call).await
                }
                Channel::Migration => r.migrator.on_request(&from, body).await,
                Channel::Repair => r.repairer.on_request(&from, body).await,
                Channel::Forward => {
                    let f = wire::decode(&body, "forwarded write")?;
                    r.router.on_forward(f).await.map(|a| wire::encode(&a))
                }
                Channel::Replication => {
                    let req: Replicate = wire::decode(&body, "replication batch")?;
                    let n = req.changes.len();
                    let origin = Origin {
                        kind: OriginKind::Replication,
                        connection: 0,
                        node: from.node_id.as_str().into(),
                    };
                    r.storage
                        .apply_replicated(req.changes.into(), origin)
                        .await
                        .map_err(|e| e.to_string())?;
                    if req.durable {
                        let t = std::time::Instant::now();
                        r.storage
                            .durable_barrier()
                            .await
                            .map_err(|e| e.to_string())?;
                        r.migrator.client_commit(t.elapsed());
                    }
                    Ok(wire::encode(&ReplicateReply {
                        applied: u32::try_from(n).unwrap_or(u32::MAX),
                        durable: req.durable,
                    }))
                }
                other => Err(format!("no requests are served on channel {other:?}")),
            }
        })
    }
}
