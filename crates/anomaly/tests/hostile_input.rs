//! What a device, an attacker or a damaged disk can hand the detector:
//! finite readings at the ends of `f64`, and saved states whose numbers
//! and lists are not what any run wrote. The gateway is built with
//! `panic = "abort"`, and the journal replays what was accepted on the
//! next start, so one panic here was a crash on every start.

use anomaly::detector::{Detector, Reason};
use anomaly::synthetic::Rng;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

const FIVE_MINUTES: i64 = 300_000;
const START: i64 = 1_764_547_200_000;

fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> T {
    from[((rng.uniform() * from.len() as f64) as usize).min(from.len() - 1)]
}

/// A day's swing with a little noise: what a room's temperature does.
fn calm(rng: &mut Rng, i: usize) -> f64 {
    20.0 + 2.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin() + 0.1 * rng.normal()
}

/// `n` calm readings from `from`, observed; returns the next time.
fn feed_calm(d: &mut Detector, rng: &mut Rng, from: usize, n: usize) -> i64 {
    let mut at = START + from as i64 * FIVE_MINUTES;
    for i in from..from + n {
        d.observe(at, calm(rng, i), 1.0);
        at += FIVE_MINUTES;
    }
    at
}

#[test]
fn readings_at_the_ends_of_f64_are_reported_never_a_panic() {
    // Before the clip, the first of these made every spread infinite and
    // the next step's clip bounds NaN, which `f64::clamp` panics on.
    const EXTREMES: [f64; 10] = [
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN,
        1e200,
        -1e154,
        f64::MIN_POSITIVE,
        -0.0,
        5e-324,
        1e31,
    ];
    for seed in 1..=40 {
        let mut rng = Rng::new(seed);
        let mut d = Detector::new();
        let mut at = feed_calm(&mut d, &mut rng, 0, 1_500);
        let first = d.observe(at, 1e308, 1.0);
        assert!(first.anomaly, "seed {seed}: 1e308 after calm days");
        assert_eq!(first.reason, Some(Reason::Spike), "seed {seed}");
        for _ in 0..2_000 {
            at += FIVE_MINUTES;
            let v = d.observe(at, pick(&mut rng, &EXTREMES), 1.0);
            assert!(!v.score.is_nan(), "seed {seed}: {v:?}");
        }
        // It goes on judging the room once the device is sane again.
        feed_calm(&mut d, &mut rng, 3_501, 3_000);
        let back = d.observe(at + 3_001 * FIVE_MINUTES, 1e6, 1.0);
        assert!(back.score.is_finite(), "seed {seed}: {back:?}");
    }
}

const ODD_NUMBERS: [f64; 9] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e308,
    -1e308,
    0.0,
    -1.0,
    1e-308,
    4e9,
];

/// One change to a saved state, somewhere in its tree: a packed field's
/// bytes (an `f64` or `f32` made NaN, infinite or huge, or one byte
/// scribbled), a number made extreme, a list cut short, grown or emptied,
/// a flag flipped.
fn damage(state: &mut Value, rng: &mut Rng) {
    match state {
        Value::Object(fields) if !fields.is_empty() => {
            let n = fields.len();
            let i = ((rng.uniform() * n as f64) as usize).min(n - 1);
            let deeper = rng.uniform() < 0.75;
            if let Some(field) = fields.values_mut().nth(i) {
                if deeper || !field.is_object() {
                    damage(field, rng);
                }
            }
        }
        Value::Array(items) => {
            let n = items.len();
            if n > 0 && rng.uniform() >= 0.2 {
                let i = ((rng.uniform() * n as f64) as usize).min(n - 1);
                damage(&mut items[i], rng);
                return;
            }
            match pick(rng, &[0, 1, 2]) {
                0 => items.truncate((rng.uniform() * n as f64) as usize),
                1 => {
                    if let Some(first) = items.first().cloned() {
                        items.extend(std::iter::repeat_n(first, 1 + n));
                    }
                }
                _ => items.clear(),
            }
        }
        Value::String(text) => {
            let Ok(mut bytes) = STANDARD.decode(text.as_bytes()) else {
                return;
            };
            if bytes.len() < 8 {
                return;
            }
            let odd = pick(rng, &ODD_NUMBERS);
            let (width, new): (usize, Vec<u8>) = match pick(rng, &[0, 1, 2]) {
                0 => (8, odd.to_le_bytes().to_vec()),
                1 => (4, (odd as f32).to_le_bytes().to_vec()),
                _ => (1, vec![(rng.uniform() * 256.0) as u8]),
            };
            let slot = (rng.uniform() * (bytes.len() / width) as f64) as usize * width;
            for (b, n) in bytes.iter_mut().skip(slot).zip(new) {
                *b = n;
            }
            *text = STANDARD.encode(bytes);
        }
        Value::Number(_) => {
            *state = pick(rng, &[0.0, -1.0, 1e308, -1e308, 65_535.0, 255.0, 1e19, 3.5]).into();
        }
        Value::Bool(b) => *b = !*b,
        _ => {}
    }
}

#[test]
fn a_damaged_saved_state_loads_and_runs_or_is_refused_never_a_panic() {
    let mut rng = Rng::new(74);
    let mut d = Detector::new();
    let at = feed_calm(&mut d, &mut rng, 0, 6_000);
    let saved = serde_json::to_value(&d).unwrap_or_default();
    let (mut loaded, mut tried) = (0, 0);
    for _ in 0..1_500 {
        let mut state = saved.clone();
        for _ in 0..1 + (rng.uniform() * 3.0) as usize {
            damage(&mut state, &mut rng);
        }
        tried += 1;
        let Ok(mut restored) = serde_json::from_value::<Detector>(state.clone()) else {
            continue;
        };
        loaded += 1;
        let mut t = at;
        for i in 0..1_500 {
            restored.observe(t, calm(&mut rng, 6_000 + i), 1.0);
            t += FIVE_MINUTES;
        }
        // And saved again, as the next checkpoint would.
        assert!(serde_json::to_string(&restored).is_ok(), "{state}");
    }
    // Most damage is to numbers a state holds, which load.
    assert!(loaded * 2 > tried, "only {loaded} of {tried} loaded");
}
