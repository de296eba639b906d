//! `simulate --protocol modbus`: a Modbus TCP server holding the input
//! registers of `--devices` Eastron SDM120 meters (units 1, 2, …), as the
//! shipped `eastron_sdm120` profile reads them, with values that drift
//! like a household circuit's. The gateway polls it; nothing is pushed.
//! For the demo and the benches: `[[modbus.device]] profile =
//! "eastron_sdm120"` per unit reads it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use adapters::modbus::profiles;
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};

use super::SimulateArgs;

/// Where the server listens unless `--target` says otherwise (502 needs
/// root).
pub const DEFAULT_TARGET: &str = "127.0.0.1:5020";
/// Past the last register of an SDM120's map: exception 2.
const MAP_END: u32 = 0x0200;

/// The meters, their clock and the requests they answered.
struct Meters {
    units: u8,
    start: Instant,
    served: AtomicU64,
}

impl Meters {
    /// The SDM120 quantities of meter `unit` at `t` seconds: a load that
    /// swings over a minute, and energy that grows with it.
    fn value(&self, unit: u8, metric: &str, t: f64) -> f32 {
        let phase = f64::from(unit);
        let volts = 230.0 + 2.0 * (t / 60.0 + phase).sin();
        let amps = 5.0 + 3.0 * (t / 30.0 + phase).sin();
        let pf = 0.95;
        let watts = volts * amps * pf;
        let v = match metric {
            "voltage" => volts,
            "current" => amps,
            "power" => watts,
            "apparent_power" => volts * amps,
            "reactive_power" => volts * amps * (1.0 - pf * pf).sqrt(),
            "power_factor" => pf,
            "frequency" => 50.0 + 0.02 * (t / 10.0).sin(),
            // About 1.1 kW on average since start, over a base reading.
            "total_energy" | "import_energy" => 1000.0 * phase + 1.1 * t / 3600.0,
            _ => 0.0,
        };
        v as f32
    }

    fn registers(&self, unit: u8, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        if unit == 0 || unit > self.units {
            // What a TCP-to-RS-485 gateway answers for a unit that is silent.
            return Err(ExceptionCode::GatewayTargetDevice);
        }
        let end = u32::from(start) + u32::from(count);
        if count == 0 || count > 125 || end > MAP_END {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let t = self.start.elapsed().as_secs_f64();
        let mut words = vec![0u16; usize::from(count)];
        let Some(profile) = profiles::find("eastron_sdm120") else {
            return Err(ExceptionCode::ServerDeviceFailure);
        };
        for e in profile.registers {
            let bytes = self.value(unit, e.metric, t).to_be_bytes();
            for (k, pair) in bytes.chunks(2).enumerate() {
                let at = u32::from(e.address) + k as u32;
                if (u32::from(start)..end).contains(&at) {
                    words[(at - u32::from(start)) as usize] =
                        u16::from_be_bytes([pair[0], pair[1]]);
                }
            }
        }
        Ok(words)
    }
}

#[derive(Clone)]
struct MeterService(Arc<Meters>);

impl tokio_modbus::server::Service for MeterService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.0.served.fetch_add(1, Ordering::Relaxed);
        let unit = req.slave;
        std::future::ready(match req.request {
            // SDM meters answer both function codes from the same map.
            Request::ReadInputRegisters(a, n) => self
                .0
                .registers(unit, a, n)
                .map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(a, n) => self
                .0
                .registers(unit, a, n)
                .map(Response::ReadHoldingRegisters),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serves until `--duration` passes (or Ctrl-C); returns the requests
/// answered.
///
/// # Errors
/// The address cannot be bound, or more than 247 meters were asked for.
pub async fn run(args: &SimulateArgs, target: SocketAddr) -> anyhow::Result<u64> {
    let units = u8::try_from(args.devices)
        .ok()
        .filter(|n| *n <= 247)
        .context("--devices: a Modbus line has at most 247 units")?;
    let listener = TcpListener::bind(target)
        .await
        .with_context(|| format!("bind {target}"))?;
    let meters = Arc::new(Meters {
        units,
        start: Instant::now(),
        served: AtomicU64::new(0),
    });
    eprintln!(
        "simulate: {units} SDM120 meters (units 1-{units}) on tcp://{} (profile = \"eastron_sdm120\")",
        listener.local_addr()?
    );
    let service = MeterService(meters.clone());
    let server = Server::new(listener);
    let new_service = move |_peer| Ok(Some(service.clone()));
    let on_connected = |stream, peer| {
        let new_service = new_service.clone();
        async move { accept_tcp_connection(stream, peer, new_service) }
    };
    let stop = async move {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        r = server.serve(&on_connected, |e| eprintln!("simulate: {e}")) => {
            r.context("the Modbus server stopped")?;
        }
        () = stop => {}
    }
    Ok(meters.served.load(Ordering::Relaxed))
}
