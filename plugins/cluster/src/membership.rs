//! Membership and failure detection: an adapter over the `chitchat` gossip
//! engine (scuttlebutt reconciliation, phi-accrual failure detection).
//!
//! Gossip rides the cluster transport (see [`GossipLink`]): the same port,
//! the same handshake (cluster id) and, when it is on, the same mutual TLS
//! as every other node-to-node frame, so a node that may not join cannot
//! gossip either.
//!
//! Each node publishes a few keys: its client endpoint, its zone, whether it
//! belongs to a formed cluster (has Raft state) and whether it is leaving.
//! The adapter folds chitchat's view into one [`Peer`] per node id (the
//! newest generation wins, so a restarted node replaces its old self) with a
//! [`PeerHealth`]: alive, suspected (the failure detector gave up on it less
//! than `failure_confirm` ago) or failed (confirmed: its partitions are taken
//! over).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::{Socket, Transport as GossipTransport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, ChitchatMessage, Deserializable,
    FailureDetectorConfig, Serializable,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

/// Key: the node's WebSocket endpoint for clients.
const KEY_CLIENT: &str = "client";
/// Key: the node's zone label.
const KEY_ZONE: &str = "zone";
/// Key: "1" once the node belongs to a formed cluster (it has Raft state).
const KEY_FORMED: &str = "formed";
/// Key: "1" while the node is leaving gracefully.
const KEY_LEAVING: &str = "leaving";

/// How gossip frames leave this node: the cluster transport's gossip
/// channel. Sending MUST NOT block; a frame that cannot be queued is dropped
/// (gossip repeats itself every round).
pub trait GossipLink: Send + Sync + 'static {
    /// Queues one gossip frame for the node at `to`.
    fn send(&self, to: SocketAddr, frame: Bytes);
}

/// Settings of the membership engine.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This node's id.
    pub node_id: String,
    /// The cluster id peers must share.
    pub cluster_id: String,
    /// This node's advertised transport address (gossip rides it).
    pub addr: SocketAddr,
    /// Seeds as `host:port`; host names are re-resolved periodically.
    pub seeds: Vec<String>,
    /// Gossip round interval.
    pub gossip_interval: Duration,
    /// Phi-accrual threshold.
    pub phi_threshold: f64,
    /// How long a suspected node stays suspected before it is failed.
    pub failure_confirm: Duration,
    /// Published client endpoint.
    pub client_endpoint: String,
    /// Published zone.
    pub zone: String,
}

/// How a peer is doing, as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerHealth {
    /// Heartbeats arrive.
    Alive,
    /// The failure detector gave up on it; not yet confirmed.
    Suspected,
    /// Confirmed failed.
    Failed,
}

/// One node as gossip knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Node id.
    pub node_id: String,
    /// Incarnation (start time in ms); a restart gives a higher one.
    pub generation: u64,
    /// Transport address.
    pub addr: SocketAddr,
    /// Client endpoint it publishes.
    pub client_endpoint: String,
    /// Zone it publishes.
    pub zone: String,
    /// It belongs to a formed cluster.
    pub formed: bool,
    /// It is leaving gracefully.
    pub leaving: bool,
    /// Health.
    pub health: PeerHealth,
    /// True for this node.
    pub is_local: bool,
}

/// The running membership engine.
pub struct Membership {
    handle: tokio::sync::Mutex<Option<ChitchatHandle>>,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    peers: watch::Sender<BTreeMap<String, Peer>>,
    inbound: mpsc::Sender<(SocketAddr, Bytes)>,
    config: MembershipConfig,
    generation: u64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

/// chitchat's socket over the cluster transport.
struct LinkSocket {
    addr: SocketAddr,
    link: Arc<dyn GossipLink>,
    rx: mpsc::Receiver<(SocketAddr, Bytes)>,
}

#[async_trait]
impl Socket for LinkSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        if to == self.addr {
            return Ok(());
        }
        self.link.send(to, Bytes::from(msg.serialize_to_vec()));
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let Some((from, bytes)) = self.rx.recv().await else {
                anyhow::bail!("the cluster transport stopped");
            };
            let mut buf: &[u8] = &bytes;
            match ChitchatMessage::deserialize(&mut buf) {
                Ok(msg) => return Ok((from, msg)),
                Err(e) => {
                    tracing::warn!(peer = %from, error = %e, "dropped an undecodable gossip frame")
                }
            }
        }
    }
}

/// Hands chitchat the one socket it opens.
struct LinkTransport(Mutex<Option<LinkSocket>>);

#[async_trait]
impl GossipTransport for LinkTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        match self.0.lock().take() {
            Some(s) => Ok(Box::new(s)),
            None => anyhow::bail!("the gossip socket was already opened"),
        }
    }
}

impl Membership {
    /// Starts gossiping. Incoming gossip frames MUST be handed to
    /// [`Self::receive`].
    ///
    /// # Errors
    /// When chitchat cannot start (text of its error).
    pub async fn start(
        config: MembershipConfig,
        link: Arc<dyn GossipLink>,
    ) -> Result<Arc<Self>, String> {
        let generation = hangar_core::hlc::system_millis();
        let (tx, rx) = mpsc::channel(4096);
        let transport = LinkTransport(Mutex::new(Some(LinkSocket {
            addr: config.addr,
            link,
            rx,
        })));
        let interval = config.gossip_interval;
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.node_id.clone(), generation, config.addr),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: interval,
            listen_addr: config.addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: 1_000,
                max_interval: interval * 25,
                initial_interval: interval * 2,
                dead_node_grace_period: Duration::from_secs(3_600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3_600),
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let kv = vec![
            (KEY_CLIENT.to_string(), config.client_endpoint.clone()),
            (KEY_ZONE.to_string(), config.zone.clone()),
            (KEY_FORMED.to_string(), "0".to_string()),
            (KEY_LEAVING.to_string(), "0".to_string()),
        ];
        let handle = spawn_chitchat(chitchat_config, kv, &transport)
            .await
            .map_err(|e| format!("gossip did not start: {e:#}"))?;
        let chitchat = handle.chitchat();
        let (peers, _) = watch::channel(BTreeMap::new());
        let me = Arc::new(Self {
            handle: tokio::sync::Mutex::new(Some(handle)),
            chitchat,
            peers,
            inbound: tx,
            config,
            generation,
        });
        let watcher = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut dead_since: HashMap<String, Instant> = HashMap::new();
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                let Some(m) = watcher.upgrade() else { return };
                m.refresh(&mut dead_since).await;
            }
        });
        Ok(me)
    }

    /// An incoming gossip frame from the node at `from`.
    pub fn receive(&self, from: SocketAddr, frame: Bytes) {
        if self.inbound.try_send((from, frame)).is_err() {
            tracing::debug!(peer = %from, "gossip inbox full; frame dropped");
        }
    }

    /// This node's incarnation.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every node gossip knows of, by id, this node included. Changes are
    /// published on [`Self::watch`].
    #[must_use]
    pub fn peers(&self) -> BTreeMap<String, Peer> {
        self.peers.borrow().clone()
    }

    /// Runs `f` on the current peers without copying them (for hot paths:
    /// `f` MUST NOT block or await, it holds the view's read lock).
    pub fn with_peers<R>(&self, f: impl FnOnce(&BTreeMap<String, Peer>) -> R) -> R {
        f(&self.peers.borrow())
    }

    /// A watch on [`Self::peers`].
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<BTreeMap<String, Peer>> {
        self.peers.subscribe()
    }

    /// Publishes that this node belongs to a formed cluster.
    pub async fn set_formed(&self, formed: bool) {
        self.set(KEY_FORMED, if formed { "1" } else { "0" }).await;
    }

    /// Publishes that this node is leaving.
    pub async fn set_leaving(&self) {
        self.set(KEY_LEAVING, "1").await;
    }

    async fn set(&self, key: &str, value: &str) {
        self.chitchat.lock().await.self_node_state().set(key, value);
    }

    /// Asks for a gossip round with `addr` now (a new seed, a rejoin).
    pub async fn gossip_with(&self, addr: SocketAddr) {
        if let Some(h) = self.handle.lock().await.as_ref() {
            let _ = h.gossip(addr);
        }
    }

    /// Stops gossiping. Idempotent.
    pub async fn shutdown(&self) {
        if let Some(h) = self.handle.lock().await.take() {
            let _ = h.shutdown().await;
        }
    }

    async fn refresh(&self, dead_since: &mut HashMap<String, Instant>) {
        let next = {
            let cc = self.chitchat.lock().await;
            let live: Vec<ChitchatId> = cc.live_nodes().cloned().collect();
            let mut out: BTreeMap<String, Peer> = BTreeMap::new();
            for (id, state) in cc.node_states() {
                let alive = live.contains(id);
                let get = |k: &str| state.get(k).unwrap_or_default().to_string();
                let peer = Peer {
                    node_id: id.node_id.to_string(),
                    generation: id.generation_id,
                    addr: id.gossip_advertise_addr,
                    client_endpoint: get(KEY_CLIENT),
                    zone: get(KEY_ZONE),
                    formed: state.get(KEY_FORMED) == Some("1"),
                    leaving: state.get(KEY_LEAVING) == Some("1"),
                    health: if alive {
                        PeerHealth::Alive
                    } else {
                        PeerHealth::Suspected
                    },
                    is_local: *id.node_id == *self.config.node_id
                        && id.generation_id == self.generation,
                };
                // The newest incarnation of a node id speaks for it.
                match out.get(&peer.node_id) {
                    Some(old) if old.generation > peer.generation => {}
                    _ => {
                        out.insert(peer.node_id.clone(), peer);
                    }
                }
            }
            out
        };
        let now = Instant::now();
        let mut next = next;
        for p in next.values_mut() {
            if p.health == PeerHealth::Alive {
                dead_since.remove(&p.node_id);
            } else {
                let since = *dead_since.entry(p.node_id.clone()).or_insert(now);
                if now.duration_since(since) >= self.config.failure_confirm {
                    p.health = PeerHealth::Failed;
                }
            }
        }
        self.peers.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}
