//! The actuators a rule action of the older forms names (`publish` on a
//! broker, `coap_put`): each a device of its own
//! (`gateway_core::config::action`), written by the mqtt adapter's writer
//! (one connection per broker, client id `edge-gateway-{id}-actions-set`)
//! or the coap adapter's. Only rule actions reach them: the cloud and
//! Home Assistant write to points a config declares writable.

use std::sync::Arc;

use gateway_core::command::{CommandTarget, CommandTargets, RawPoint};
use gateway_core::config::action::ImplicitActuator;
#[cfg(any(feature = "mqtt", feature = "coap"))]
use gateway_core::config::action::Reach;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The running actuators' targets and their writers' tasks.
#[derive(Default)]
pub struct Actuators {
    pub targets: CommandTargets,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Actuators {
    /// Starts the writers of `implicit`; they stop with `stop`.
    // Only the MQTT writer has a connection (named after the gateway) and a
    // task to stop: a build without it leaves both unused.
    #[cfg_attr(not(feature = "mqtt"), allow(unused_variables, unused_mut))]
    pub fn start(
        implicit: &[ImplicitActuator],
        gateway_id: &str,
        stop: &CancellationToken,
    ) -> Self {
        let mut actuators = Self::default();
        #[cfg(feature = "mqtt")]
        let mut brokers: Vec<(gateway_core::config::BrokerSection, _)> = Vec::new();
        for a in implicit {
            let target: Option<Arc<dyn CommandTarget>> = match &a.reach {
                #[cfg(feature = "mqtt")]
                Reach::Publish { broker, topic } => {
                    let at = match brokers.iter().position(|(b, _)| b == &**broker) {
                        Some(at) => at,
                        None => {
                            let (jobs, rx) = tokio::sync::mpsc::channel(crate::mqtt::writer::QUEUE);
                            let n = brokers.len();
                            let suffix = if n == 0 {
                                String::new()
                            } else {
                                format!("-{}", n + 1)
                            };
                            let connection = mqtt_connect::ConnectionSettings::new(
                                broker,
                                format!("edge-gateway-{gateway_id}-actions{suffix}"),
                            );
                            actuators.tasks.push(tokio::spawn(crate::mqtt::writer::run(
                                connection,
                                rx,
                                stop.clone(),
                            )));
                            brokers.push(((**broker).clone(), jobs));
                            n
                        }
                    };
                    brokers.get(at).map(|(_, jobs)| {
                        crate::mqtt::writer::TopicTarget::new(point(a), topic, jobs.clone())
                            as Arc<dyn CommandTarget>
                    })
                }
                #[cfg(feature = "coap")]
                Reach::CoapPut { uri } => {
                    Some(crate::coap::writer::CoapPutTarget::new(point(a), uri))
                }
                #[allow(unreachable_patterns)]
                _ => None,
            };
            match target {
                Some(t) => actuators.targets.register(a.device.as_str(), t),
                None => {
                    warn!(device = %a.device, "This build has no writer for a rule action's actuator: its commands are refused (not_writable).");
                }
            }
        }
        actuators
    }
}

/// The one point an actuator's commands name.
#[allow(dead_code)] // without the mqtt and coap features
fn point(a: &ImplicitActuator) -> RawPoint {
    RawPoint {
        device: a.device.clone(),
        point: a.reach.point().to_string(),
    }
}
