// compact_i16, bitpacked and batch for C/C++ nodes (Arduino
// LMIC), byte for byte as the gateway decodes them and as wire.py and
// firmware/codec encode them (firmware/micropython/tests/test_lmic_frames.py
// compiles this header and compares).
//
// Values are scaled to the field's resolution and rounded half away from
// zero; a value that does not fit, or is NaN/infinite, is refused
// (SEED_ERR_*), never clamped. No heap, no printf: fits an ATmega328.
#ifndef SEED_FRAMES_H
#define SEED_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define COMPACT_I16_LEN 5      // >hBH
#define BITPACKED_LEN 3
#define BATCH_HEADER_LEN 5 // count u8, base time u32 (epoch s)
#define BATCH_READING_LEN 6 // delta u16 (s), value x10 i32
#define BATCH_MAX 255

#define SEED_ERR_NOT_FINITE (-1)
#define SEED_ERR_RANGE (-2)
#define SEED_ERR_BUFFER (-3)

// value * per_unit rounded half away from zero into *out, within lo..hi.
static inline int seed_scale(double value, double per_unit, long lo, long hi, long *out) {
  // NaN fails every comparison; infinities fail the range test below.
  if (!(value == value)) return SEED_ERR_NOT_FINITE;
  double x = value * per_unit;
  double r = x >= 0 ? x + 0.5 : x - 0.5;
  // Checked before the cast, which is undefined out of range in C.
  if (!(r < (double)hi + 1.0) || !(r > (double)lo - 1.0)) {
    return (x - x) == (x - x) ? SEED_ERR_RANGE : SEED_ERR_NOT_FINITE;
  }
  *out = (long)r; // truncates toward zero: half away from zero overall
  return 0;
}

// Temperature (0.1 C, i16), humidity (1 %, u8), battery (0.01 V, u16).
static inline int compact_i16(double temperature, double humidity, double battery,
                               uint8_t out[COMPACT_I16_LEN]) {
  long t, h, b;
  int e;
  if ((e = seed_scale(temperature, 10, -32768L, 32767L, &t))) return e;
  if ((e = seed_scale(humidity, 1, 0, 255, &h))) return e;
  if ((e = seed_scale(battery, 100, 0, 65535L, &b))) return e;
  out[0] = (uint8_t)((uint16_t)(int16_t)t >> 8);
  out[1] = (uint8_t)((uint16_t)(int16_t)t & 0xFF);
  out[2] = (uint8_t)h;
  out[3] = (uint8_t)((uint16_t)b >> 8);
  out[4] = (uint8_t)((uint16_t)b & 0xFF);
  return COMPACT_I16_LEN;
}

// byte0 = (t + 20) * 2; byte1 = humidity (7 bits) << 1 | battery bit 6;
// byte2 = battery bits 0-5 << 2.
static inline int bitpacked(double temperature, double humidity, double battery_pct,
                                 uint8_t out[BITPACKED_LEN]) {
  long t, h, b;
  int e;
  if (!(temperature == temperature)) return SEED_ERR_NOT_FINITE;
  if ((e = seed_scale(temperature + 20, 2, 0, 255, &t))) return e;
  if ((e = seed_scale(humidity, 1, 0, 127, &h))) return e;
  if ((e = seed_scale(battery_pct, 1, 0, 127, &b))) return e;
  out[0] = (uint8_t)t;
  out[1] = (uint8_t)((h << 1) | (b >> 6));
  out[2] = (uint8_t)((b & 0x3F) << 2);
  return BITPACKED_LEN;
}

// n readings of one metric, each (seconds after base, value); the gateway
// reads each as `value` at base + delta, 0.1 resolution. Returns the length.
static inline int batch(uint32_t base, const uint16_t *deltas, const double *values, size_t n,
                             uint8_t *out, size_t cap) {
  size_t need = BATCH_HEADER_LEN + n * BATCH_READING_LEN;
  if (n > BATCH_MAX) return SEED_ERR_RANGE;
  if (cap < need) return SEED_ERR_BUFFER;
  out[0] = (uint8_t)n;
  out[1] = (uint8_t)(base >> 24);
  out[2] = (uint8_t)(base >> 16);
  out[3] = (uint8_t)(base >> 8);
  out[4] = (uint8_t)base;
  for (size_t i = 0; i < n; i++) {
    long v;
    int e = seed_scale(values[i], 10, -2147483647L - 1, 2147483647L, &v);
    if (e) return e;
    uint8_t *p = out + BATCH_HEADER_LEN + i * BATCH_READING_LEN;
    uint32_t u = (uint32_t)(int32_t)v;
    p[0] = (uint8_t)(deltas[i] >> 8);
    p[1] = (uint8_t)deltas[i];
    p[2] = (uint8_t)(u >> 24);
    p[3] = (uint8_t)(u >> 16);
    p[4] = (uint8_t)(u >> 8);
    p[5] = (uint8_t)u;
  }
  return (int)need;
}

#endif
