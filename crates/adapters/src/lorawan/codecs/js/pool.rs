//! The threads scripts run on, and who runs next.
//!
//! A few worker threads (as many as the machine has cores, 2 to 4) serve
//! every loaded file. A file is a [`Unit`]: its engine and its queue of
//! calls. A unit runs on one worker at a time (a QuickJS runtime is
//! single-threaded), so one file never holds more than one worker; units
//! take turns in arrival order, a turn ending when its queue is empty or
//! after [`SLICE`], so a busy file does not starve a quiet one. A unit
//! whose last call ran into a limit (a loop, an allocation bomb) is a
//! *suspect*: suspects together hold at most all workers but one, so a
//! healthy file always finds a free worker within one call's time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::engine::{Engine, Entries};
use super::{Limits, ScriptError};

/// A call: runs on a worker with the unit's engine; `true` when it ran
/// into a limit.
pub(super) type Job = Box<dyn FnOnce(&mut Engine) -> bool + Send>;

/// A worker's stack: the interpreter's own limit ([`Limits::MAX_STACK`]
/// at most) plus the native frames around it.
pub(super) const WORKER_STACK: usize = 4 << 20;

/// Calls of one file waiting at most; more are refused ([`ScriptError::Backlog`]).
pub(super) const MAX_QUEUED: usize = 1024;

/// Longest turn of one unit while others wait.
const SLICE: Duration = Duration::from_millis(5);

/// One loaded file.
pub(super) struct Unit {
    state: Mutex<UnitState>,
    limits: Limits,
    /// The last call ran into a limit.
    suspect: AtomicBool,
}

struct UnitState {
    /// `None` while a worker has it.
    engine: Option<Engine>,
    /// A newer text of the file, compiled, taken at the next turn.
    replacement: Option<Engine>,
    source: Arc<str>,
    entries: Entries,
    jobs: VecDeque<Job>,
    /// In the ready queue or on a worker.
    scheduled: bool,
}

impl Unit {
    pub(super) fn new(engine: Engine, source: Arc<str>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(UnitState {
                entries: engine.entries().clone(),
                engine: Some(engine),
                replacement: None,
                source,
                jobs: VecDeque::new(),
                scheduled: false,
            }),
            limits,
            suspect: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UnitState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    pub(super) fn source(&self) -> Arc<str> {
        Arc::clone(&self.lock().source)
    }

    pub(super) fn entries(&self) -> Entries {
        self.lock().entries.clone()
    }

    /// A new text of the file: calls already queued run with it.
    pub(super) fn replace(&self, engine: Engine, source: Arc<str>) {
        let mut state = self.lock();
        state.entries = engine.entries().clone();
        state.replacement = Some(engine);
        state.source = source;
        self.suspect.store(false, Ordering::Relaxed);
    }

    /// Queues a call.
    pub(super) fn submit(self: &Arc<Self>, job: Job) -> Result<(), ScriptError> {
        let pool = pool();
        let mut state = self.lock();
        if state.jobs.len() >= MAX_QUEUED {
            return Err(ScriptError::Backlog(MAX_QUEUED));
        }
        state.jobs.push_back(job);
        if !state.scheduled {
            state.scheduled = true;
            drop(state);
            pool.ready(Arc::clone(self));
        }
        Ok(())
    }

    /// One turn on a worker: calls until the queue is empty or the slice
    /// is over. `true` when calls are left.
    fn turn(&self) -> bool {
        let started = Instant::now();
        let mut engine = {
            let mut state = self.lock();
            match state.replacement.take() {
                Some(fresh) => {
                    state.engine = None;
                    fresh
                }
                // Neither only if a turn is already running elsewhere,
                // which `scheduled` rules out; unscheduled, not stuck.
                None => match state.engine.take() {
                    Some(e) => e,
                    None => {
                        state.scheduled = false;
                        return false;
                    }
                },
            }
        };
        loop {
            // A text loaded while this turn runs serves the calls queued
            // after it, not only the next turn's: a call made right after
            // a reload once ran on the old text (seen under load in CI).
            let job = {
                let mut state = self.lock();
                if let Some(fresh) = state.replacement.take() {
                    engine = fresh;
                }
                state.jobs.pop_front()
            };
            let Some(job) = job else { break };
            let hit_limit = job(&mut engine);
            self.suspect.store(hit_limit, Ordering::Relaxed);
            if started.elapsed() >= SLICE {
                break;
            }
        }
        let mut state = self.lock();
        if state.replacement.is_none() {
            state.engine = Some(engine);
        }
        if state.jobs.is_empty() {
            state.scheduled = false;
            false
        } else {
            true
        }
    }
}

struct Pool {
    state: Mutex<Ready>,
    wake: Condvar,
    workers: usize,
}

struct Ready {
    queue: VecDeque<Arc<Unit>>,
    /// Workers now running a suspect unit.
    suspects: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(2, 4);
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            state: Mutex::new(Ready {
                queue: VecDeque::new(),
                suspects: 0,
            }),
            wake: Condvar::new(),
            workers,
        }));
        for i in 0..workers {
            let spawned = std::thread::Builder::new()
                .name(format!("js-codec-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || pool.work());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "Cannot start a JavaScript codec worker.");
            }
        }
        pool
    })
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ready> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ready(&self, unit: Arc<Unit>) {
        self.lock().queue.push_back(unit);
        self.wake.notify_one();
    }

    /// The next unit this worker may run: the first in line, unless it is
    /// a suspect and suspects already hold every worker but one.
    fn next(&self) -> (Arc<Unit>, bool) {
        let mut ready = self.lock();
        loop {
            let suspects_full = ready.suspects + 1 >= self.workers;
            let at = ready
                .queue
                .iter()
                .position(|u| !(suspects_full && u.suspect.load(Ordering::Relaxed)));
            if let Some(unit) = at.and_then(|i| ready.queue.remove(i)) {
                let suspect = unit.suspect.load(Ordering::Relaxed);
                if suspect {
                    ready.suspects += 1;
                }
                return (unit, suspect);
            }
            ready = self
                .wake
                .wait(ready)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn work(&self) {
        loop {
            let (unit, suspect) = self.next();
            let more = unit.turn();
            let mut ready = self.lock();
            if suspect {
                ready.suspects -= 1;
            }
            if more {
                ready.queue.push_back(unit);
            }
            drop(ready);
            // A suspect's end may let a waiting worker take another.
            if suspect {
                self.wake.notify_all();
            }
        }
    }
}
