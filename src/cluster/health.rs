//! The heartbeat responder every node runs: peers call it over the cluster
//! to learn that this node is alive and answering, not merely connected.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use super::wire::NodeName;

pub struct Health;

#[derive(RactorClusterMessage)]
pub enum HealthMsg {
    /// Answers with this node's name.
    #[rpc]
    Ping(RpcReplyPort<NodeName>),
}

impl Actor for Health {
    type Msg = HealthMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<HealthMsg>,
        node: String,
    ) -> Result<String, ActorProcessingErr> {
        ractor::pg::join(super::HEALTH_GROUP.to_owned(), vec![myself.get_cell()]);
        Ok(node)
    }

    async fn handle(
        &self,
        _myself: ActorRef<HealthMsg>,
        msg: HealthMsg,
        node: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HealthMsg::Ping(reply) => {
                let _ = reply.send(NodeName(node.clone()));
            }
        }
        Ok(())
    }
}
