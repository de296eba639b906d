# Edit, then copy with the node: mpremote cp config.py :
WIFI_SSID = "building-iot"
WIFI_PASSWORD = "change-me"
GATEWAY = "192.168.1.10"  # the Raspberry Pi running edge-gateway
PORT = 8080  # its tcp_line adapter (bind = "0.0.0.0:8080", ack = true)
# The gateway's `columns`, in this order. `ts` (epoch ms) keeps each line's
# own time when it is resent after an outage; drop it only to talk to a
# four-column config (columns = ["temperature", "pressure", "humidity", "gas"]).
COLUMNS = ["ts", "temperature", "pressure", "humidity", "gas"]
MIN_INTERVAL_S = 30
MAX_INTERVAL_S = 900
START_INTERVAL_S = 120
HEARTBEAT_S = 3600
THRESHOLDS = {"temperature": 0.2, "humidity": 1.0, "pressure": 0.5, "gas": 5000}
BATCH = 4
MAX_BATCH_AGE_S = 1800
HOUR_FACTORS = [2.0] * 6 + [1.0] * 16 + [2.0] * 2
SCL, SDA = 22, 21
BATTERY_ADC_PIN = 35
BATTERY_DIVIDER = 2.0
# The RTC is set from NTP at every Wi-Fi association (the ESP32's RTC
# drifts in deep sleep). Use the Pi if it serves NTP (chrony with `allow`)
# and the LAN has no internet; None skips it.
NTP_HOST = "pool.ntp.org"
