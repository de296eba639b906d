// LoRaWAN sensor node (after the LMIC ABP example), for the gateway's
// semtech_udp adapter: an ABP device sending compact_i16 (temperature,
// humidity, battery) every INTERVAL_S, or, with PAYLOAD_BATCH, a
// batch of BATCH temperature readings taken every INTERVAL_S and sent
// in one uplink (one radio wake-up and one frame header for BATCH
// readings, each with its own time).
//
// Board: any MCCI arduino-lmic target (Adafruit Feather 32u4/M0 RFM95,
// TTGO LoRa32, Heltec). Library: "MCCI LoRaWAN LMIC library" >= 4.1, with
// the region set in project_config/lmic_project_config.h (CFG_eu868).
// Gateway config (gateway.toml):
//   [[lorawan.device]]
//   dev_addr = "260B1234"
//   nwk_s_key = "env:LORA_260B1234_NWK_S_KEY"
//   app_s_key = "env:LORA_260B1234_APP_S_KEY"
//   codec = "compact_i16"        # or "batch" with PAYLOAD_BATCH
#include <SPI.h>
#include <hal/hal.h>
#include <lmic.h>

#include "seed_frames.h"

// #define PAYLOAD_BATCH 1
#define INTERVAL_S 300
#define BATCH 7      // 5 + 7 x 6 = 47 bytes: fits EU868 DR0-2 (51 bytes)
#define FPORT 1

// ABP session, MSB first as the network console and gateway.toml print them.
static const u4_t DEVADDR = 0x260B1234;
static const PROGMEM u1_t NWKSKEY[16] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
static const u1_t PROGMEM APPSKEY[16] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

// ABP: no join, these callbacks are never used.
void os_getArtEui(u1_t *buf) {}
void os_getDevEui(u1_t *buf) {}
void os_getDevKey(u1_t *buf) {}

// Adafruit Feather M0 RFM95; change for your board.
const lmic_pinmap lmic_pins = {
    .nss = 8,
    .rxtx = LMIC_UNUSED_PIN,
    .rst = 4,
    .dio = {3, 6, LMIC_UNUSED_PIN},
};

static osjob_t sample_job;
static uint8_t frame[BATCH_HEADER_LEN + BATCH * BATCH_READING_LEN];

#ifdef PAYLOAD_BATCH
static uint16_t deltas[BATCH];
static double values[BATCH];
static uint8_t kept = 0;
static uint32_t batch_base = 0;
// The batch's base time is Unix time (the gateway stamps each reading
// base + delta and refuses times far from its clock): provide
// unix_time_now() from an RTC, a GPS, or LoRaWAN DeviceTimeReq
// (LMIC_requestNetworkTime). Without a clock, send compact_i16: the
// gateway stamps it on arrival.
extern uint32_t unix_time_now(void);
#endif

// Replace with your sensor; NAN for a failed read.
static double read_temperature(void) { return 21.5; }
static double read_humidity(void) { return 40.0; }
static double read_battery_v(void) { return 3.3; }

static void send(const uint8_t *data, int len) {
  if (len < 0) {
    Serial.print(F("encode failed: "));
    Serial.println(len);
    return;
  }
  if (LMIC.opmode & OP_TXRXPEND) {
    // The previous uplink is still in its receive windows: skip this one
    // rather than queue behind it (the next sample follows).
    Serial.println(F("busy, reading dropped"));
    return;
  }
  // Unconfirmed: a confirmed uplink costs a downlink per reading and the
  // gateway's duty cycle (FAULTS: 1 % in EU868 for the gateway too).
  LMIC_setTxData2(FPORT, (xref2u1_t)data, len, 0);
}

static void sample(osjob_t *job) {
#ifdef PAYLOAD_BATCH
  uint32_t now = unix_time_now();
  if (kept == 0) batch_base = now;
  deltas[kept] = (uint16_t)(now - batch_base);
  values[kept] = read_temperature();
  kept++;
  if (kept == BATCH) {
    send(frame, batch(batch_base, deltas, values, kept, frame, sizeof frame));
    kept = 0;
  }
#else
  send(frame, compact_i16(read_temperature(), read_humidity(), read_battery_v(), frame));
#endif
  os_setTimedCallback(&sample_job, os_getTime() + sec2osticks(INTERVAL_S), sample);
}

void onEvent(ev_t ev) {
  if (ev == EV_TXCOMPLETE) {
    Serial.println(F("uplink sent"));
  }
}

void setup() {
  Serial.begin(115200);
  os_init();
  LMIC_reset();
  uint8_t nwk[16], app[16];
  memcpy_P(nwk, NWKSKEY, sizeof nwk);
  memcpy_P(app, APPSKEY, sizeof app);
  LMIC_setSession(0x13, DEVADDR, nwk, app);
  // Single-channel gateways and a lab setup: SF7 on the default channels;
  // LMIC keeps the EU868 duty cycle.
  LMIC_setLinkCheckMode(0);
  LMIC.dn2Dr = DR_SF9;
  LMIC_setDrTxpow(DR_SF7, 14);
  sample(&sample_job);
}

void loop() { os_runloop_once(); }
