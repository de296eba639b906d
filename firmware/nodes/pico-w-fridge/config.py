# Edit, then copy with the node: mpremote cp config.py :
WIFI_SSID = "building-iot"
WIFI_PASSWORD = "change-me"
BROKER = "192.168.1.10"
PORT = 1883
# DS18B20 data pin (with a 4.7 kOhm pull-up to 3V3).
ONEWIRE_PIN = 22
# A fridge holds 2-8 C; 0.3 C is a real change, not sensor noise (0.0625 C
# resolution at 12 bits).
THRESHOLDS = {"temperature": 0.3}
MIN_INTERVAL_S = 30
MAX_INTERVAL_S = 300
START_INTERVAL_S = 60
HEARTBEAT_S = 900
# The RTC is set from NTP at every Wi-Fi association (the ESP32's RTC
# drifts in deep sleep). Use the Pi if it serves NTP (chrony with `allow`)
# and the LAN has no internet; None skips it.
NTP_HOST = "pool.ntp.org"
