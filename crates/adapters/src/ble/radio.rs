//! The real radio: BlueZ over D-Bus through btleplug.
//!
//! btleplug's scan sets BlueZ's `DuplicateData`, so repeated advertisements
//! arrive; its events carry BlueZ's per-device service-data and
//! manufacturer-data maps, which is what the decoders take. Each event
//! becomes one [`Advertisement`] holding that event's map. The MAC comes
//! from the device's object path (`hci0/dev_54_48_E6_8F_80_A5`), and the
//! RSSI from the latest `RssiUpdate`, so no D-Bus call is made per
//! advertisement. Power-cycling goes through bluez-async, the library under
//! btleplug, which exposes the adapter's `Powered` property.

use std::collections::HashMap;
use std::sync::Arc;

use btleplug::api::{Central, CentralEvent, Manager as _, ScanFilter};
use btleplug::platform::{Adapter, Manager};
use futures::StreamExt;
use gateway_core::Clock;
use tokio::sync::mpsc;
use tracing::debug;

use super::advert::{Advertisement, Mac, ServiceUuid};
use super::watchdog::{Radio, RadioError, RadioEvent};

/// Latest RSSI per device; cleared when full, since a building's phones
/// rotate their random addresses and would grow it forever.
const MAX_RSSI_ENTRIES: usize = 4096;
/// Events waiting for the decoder: a few seconds of a crowded building.
const EVENT_QUEUE: usize = 1024;

/// The BlueZ radio, `adapter` (`hci0`) or the first one.
pub struct BluezRadio {
    adapter_name: Option<String>,
    clock: Arc<dyn Clock>,
    scanning: Option<(Adapter, tokio::task::JoinHandle<()>)>,
}

impl BluezRadio {
    pub fn new(adapter_name: Option<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            adapter_name,
            clock,
            scanning: None,
        }
    }
}

/// A btleplug error as a fault the operator can fix.
fn classify(e: &btleplug::Error) -> RadioError {
    let text = e.to_string();
    let (kind, hint) = if text.contains("AccessDenied") || text.contains("not allowed") {
        (
            "dbus_denied",
            "install the package's D-Bus policy (/usr/share/dbus-1/system.d/edge-gateway.conf) or add the service user to the bluetooth group",
        )
    } else if text.contains("ServiceUnknown") || text.contains("org.bluez was not provided") {
        (
            "no_bluetoothd",
            "install and start bluez: apt install bluez && systemctl enable --now bluetooth",
        )
    } else if text.contains("NoReply")
        || text.contains("Connection refused")
        || text.contains("No such file")
    {
        ("no_dbus", "the system D-Bus is not running")
    } else {
        (
            "bluez",
            "check `bluetoothctl show` and `journalctl -u bluetooth`",
        )
    };
    RadioError {
        kind,
        message: format!("{text} ({hint})"),
    }
}

fn no_adapter(wanted: Option<&str>) -> RadioError {
    RadioError {
        kind: "no_adapter",
        message: match wanted {
            Some(name) => format!("BlueZ has no adapter {name} (check `bluetoothctl list`; is it blocked? `rfkill unblock bluetooth`)"),
            None => "BlueZ has no Bluetooth adapter (plug in a USB dongle, or `rfkill unblock bluetooth`)".into(),
        },
    }
}

/// `hci0/dev_54_48_E6_8F_80_A5` → the MAC.
pub fn mac_of(id: &str) -> Option<Mac> {
    let dev = id.rsplit('/').next()?.strip_prefix("dev_")?;
    dev.replace('_', ":").parse().ok()
}

impl BluezRadio {
    async fn adapter(&self) -> Result<Adapter, RadioError> {
        let manager = Manager::new().await.map_err(|e| classify(&e))?;
        let adapters = manager.adapters().await.map_err(|e| classify(&e))?;
        let Some(wanted) = &self.adapter_name else {
            return adapters.into_iter().next().ok_or_else(|| no_adapter(None));
        };
        for adapter in adapters {
            // "hci0 (usb:v1D6Bp0246d0540)"
            let info = adapter.adapter_info().await.map_err(|e| classify(&e))?;
            if info.split(' ').next() == Some(wanted.as_str()) {
                return Ok(adapter);
            }
        }
        Err(no_adapter(Some(wanted)))
    }
}

impl Radio for BluezRadio {
    async fn start(&mut self) -> Result<mpsc::Receiver<RadioEvent>, RadioError> {
        self.stop().await;
        let adapter = self.adapter().await?;
        let mut events = adapter.events().await.map_err(|e| classify(&e))?;
        adapter
            .start_scan(ScanFilter::default())
            .await
            .map_err(|e| classify(&e))?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let clock = self.clock.clone();
        let task = tokio::spawn(async move {
            let mut rssi: HashMap<Mac, i8> = HashMap::new();
            while let Some(event) = events.next().await {
                let Some(event) = convert(event, &mut rssi, clock.as_ref()) else {
                    continue;
                };
                // A full queue drops: the radio must never wait on us.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                    break;
                }
            }
            debug!("BlueZ event stream ended.");
        });
        self.scanning = Some((adapter, task));
        Ok(rx)
    }

    async fn stop(&mut self) {
        if let Some((adapter, task)) = self.scanning.take() {
            task.abort();
            // Best effort: BlueZ stops discovery itself when our D-Bus
            // connection goes.
            let _ = adapter.stop_scan().await;
        }
    }

    async fn power_cycle(&mut self) -> Result<(), RadioError> {
        let fail = |e: bluez_async::BluetoothError| RadioError {
            kind: "power_cycle",
            message: e.to_string(),
        };
        let (_, session) = bluez_async::BluetoothSession::new()
            .await
            .map_err(|e| RadioError {
                kind: "no_dbus",
                message: e.to_string(),
            })?;
        let adapters = session.get_adapters().await.map_err(fail)?;
        let wanted = self.adapter_name.as_deref();
        let Some(adapter) = adapters
            .iter()
            .find(|a| wanted.is_none_or(|w| a.id.to_string() == w))
        else {
            return Err(no_adapter(wanted));
        };
        session
            .set_powered(&adapter.id, false)
            .await
            .map_err(fail)?;
        session.set_powered(&adapter.id, true).await.map_err(fail)?;
        Ok(())
    }
}

fn convert(
    event: CentralEvent,
    rssi: &mut HashMap<Mac, i8>,
    clock: &dyn Clock,
) -> Option<RadioEvent> {
    match event {
        CentralEvent::RssiUpdate { id, rssi: value } => {
            if let Some(mac) = mac_of(&id.to_string()) {
                if rssi.len() >= MAX_RSSI_ENTRIES {
                    rssi.clear();
                }
                rssi.insert(mac, i8::try_from(value).unwrap_or(i8::MIN));
            }
            Some(RadioEvent::Activity)
        }
        CentralEvent::ServiceDataAdvertisement { id, service_data } => {
            let mac = mac_of(&id.to_string())?;
            let mut adv = Advertisement::new(mac, rssi.get(&mac).copied(), clock.now());
            adv.service_data = service_data
                .into_iter()
                .map(|(uuid, data)| (ServiceUuid(uuid.as_u128()), data))
                .collect();
            adv.service_data.sort_by_key(|(u, _)| *u);
            Some(RadioEvent::Advert(adv))
        }
        CentralEvent::ManufacturerDataAdvertisement {
            id,
            manufacturer_data,
        } => {
            let mac = mac_of(&id.to_string())?;
            let mut adv = Advertisement::new(mac, rssi.get(&mac).copied(), clock.now());
            adv.manufacturer_data = manufacturer_data.into_iter().collect();
            adv.manufacturer_data.sort_by_key(|(c, _)| *c);
            Some(RadioEvent::Advert(adv))
        }
        _ => Some(RadioEvent::Activity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_comes_from_the_object_path() {
        assert_eq!(
            mac_of("hci0/dev_54_48_E6_8F_80_A5"),
            Some(Mac([0x54, 0x48, 0xE6, 0x8F, 0x80, 0xA5]))
        );
        assert_eq!(mac_of("hci0"), None);
        assert_eq!(mac_of("hci0/dev_54_48"), None);
    }
}
