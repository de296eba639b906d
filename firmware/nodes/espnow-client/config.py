# Edit, then copy with the node: mpremote cp config.py :
# The relay board's MAC, as it prints at boot ("relay-mac aa:bb:...").
RELAY_MAC = "24:0a:c4:00:00:01"
# What each line carries; the gateway's serial_line columns are these with
# "mac" first: ["mac", "ts", "temperature", "humidity", "battery"].
COLUMNS = ["ts", "temperature", "humidity", "battery"]
MIN_INTERVAL_S = 30
MAX_INTERVAL_S = 900
START_INTERVAL_S = 120
HEARTBEAT_S = 3600
THRESHOLDS = {"temperature": 0.2, "humidity": 1.0}
# ESP-NOW costs about 20 ms of radio per frame, not a Wi-Fi association:
# no batching needed.
BATCH = 1
SCL, SDA = 22, 21
BATTERY_ADC_PIN = 35
BATTERY_DIVIDER = 2.0
