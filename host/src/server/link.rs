//! The host's side of the cluster: [`HostLink`] is the `LocalNode` the
//! cluster module receives at start-up (step 4). Writes that peers forward
//! to this node run through the same pipeline as client writes
//! (`write_path`); change events and topic messages from peers reach this
//! node's subscribers; a new partition table is pushed to every client as
//! `PARTITION_MAP`.
//!
//! The link exists before the node and its front end do (the cluster module
//! starts first), so it holds them weakly and refuses work with
//! `UNAVAILABLE` until both are attached (peers retry forwarded writes).

use std::sync::{Arc, OnceLock, Weak};

use abi_stable::std_types::RVec;
use hangar_core::module::local_node::{LocalNode, TopicPublish};
use hangar_core::module::storage_types::{AckResult, ApplyBatch, ChangeEvent, ChangeSink};
use hangar_core::module::{boxed, ModuleFuture};
use hangar_core::{ErrorKind, ModuleError};

use super::epochs::licence::{self, Licence};
use super::state::FrontEnd;
use super::write_path;
use crate::factory::Node;
use crate::protocol::RawMsgpack;

/// The cluster module's handle on this node.
pub struct HostLink {
    node: OnceLock<Weak<Node>>,
    front: OnceLock<Weak<FrontEnd>>,
    /// The host's runtime: the cluster plugin polls our futures on its own
    /// executor, so host work is spawned here and only awaited there.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for HostLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLink")
            .field("node", &self.node.get().is_some())
            .field("front", &self.front.get().is_some())
            .finish()
    }
}

impl HostLink {
    /// A link whose work runs on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    #[must_use]
    pub fn on_current_runtime() -> Self {
        Self {
            node: OnceLock::new(),
            front: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Attaches the node (once it exists).
    pub fn attach_node(&self, node: &Arc<Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }

    /// Attaches the front end (once it serves).
    pub fn attach_front(&self, fe: &Arc<FrontEnd>) {
        let _ = self.front.set(Arc::downgrade(fe));
    }

    fn node(&self) -> Option<Arc<Node>> {
        self.node.get().and_then(Weak::upgrade)
    }

    fn front(&self) -> Option<Arc<FrontEnd>> {
        self.front.get().and_then(Weak::upgrade)
    }
}

impl LocalNode for HostLink {
    fn write(&self, batch: ApplyBatch) -> ModuleFuture<RVec<AckResult>> {
        let Some(node) = self.node() else {
            return boxed(async {
                Err(ModuleError::new(
                    ErrorKind::UNAVAILABLE,
                    "this node is still starting; retry",
                ))
            });
        };
        let task = self.runtime.spawn(async move {
            let ops = batch.ops.into_iter().map(Ok).collect();
            let pending =
                write_path::prepare(&node, ops, &batch.origin, batch.consistency.into_option())
                    .await;
            pending.finish(&node).await
        });
        boxed(async move {
            task.await.map(Into::into).map_err(|e| {
                ModuleError::internal(format!("the forwarded write's task failed: {e}"))
            })
        })
    }

    fn deliver_change(&self, event: &ChangeEvent) {
        if let Some(fe) = self.front() {
            if let hangar_core::MapOp::OrRemove(tag) = &event.op.op {
                fe.epochs
                    .observe_tombstone(&event.op.map, &event.op.key, tag, || fe.node.clock.now());
            }
            fe.fanout.on_change(event);
        }
    }

    fn deliver_topic(&self, m: &TopicPublish) {
        let Some(fe) = self.front() else { return };
        if m.topic.as_str() == licence::TOPIC {
            Licence::deliver(&fe, &m.data, &self.runtime);
            return;
        }
        let publisher = if m.node.as_str() == fe.node.config.node_id {
            m.connection
        } else {
            0
        };
        fe.topics.publish(
            &m.topic,
            publisher,
            Some(m.publisher.to_string()),
            RawMsgpack::from_raw_value(m.data.clone()),
            m.timestamp,
        );
    }

    fn topology_changed(&self, version: u64) {
        if let Some(fe) = self.front() {
            fe.push_partition_map(version);
        }
    }
}
