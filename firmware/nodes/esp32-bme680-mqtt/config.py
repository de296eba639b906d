# Edit, then copy with the node: mpremote cp config.py :
WIFI_SSID = "building-iot"
WIFI_PASSWORD = "change-me"
BROKER = "192.168.1.10"  # the Raspberry Pi running Mosquitto and edge-gateway
PORT = 1883
# Sampling: every 30 s to 15 min, adaptive; at least one reading an hour.
MIN_INTERVAL_S = 30
MAX_INTERVAL_S = 900
START_INTERVAL_S = 120
HEARTBEAT_S = 3600
# A reading is sent when a metric moved at least this much since the last
# one sent.
THRESHOLDS = {"temperature": 0.2, "humidity": 1.0, "pressure": 0.5, "gas": 5000}
# Readings per Wi-Fi connection (kept in RTC memory while asleep), and the
# longest a reading may wait for its batch.
BATCH = 4
MAX_BATCH_AGE_S = 1800
# Office hours stretch nothing; nights (22:00-06:00 UTC) double the interval.
HOUR_FACTORS = [2.0] * 6 + [1.0] * 16 + [2.0] * 2
# I2C pins of the BME680, and the ADC pin of the battery divider (1:2).
SCL, SDA = 22, 21
BATTERY_ADC_PIN = 35
BATTERY_DIVIDER = 2.0
# The RTC is set from NTP at every Wi-Fi association (the ESP32's RTC
# drifts in deep sleep). Use the Pi if it serves NTP (chrony with `allow`)
# and the LAN has no internet; None skips it.
NTP_HOST = "pool.ntp.org"
