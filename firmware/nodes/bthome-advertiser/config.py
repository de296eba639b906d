# Edit, then copy with the node: mpremote cp config.py :
NAME = "bth-office"  # Complete Local Name (keep it short: 31 bytes in all)
INTERVAL_S = 60  # one burst of advertisements per wake
ADVERTISE_MS = 1100  # burst length: about 10 adverts at 100 ms
ADV_INTERVAL_US = 100_000
SCL, SDA = 22, 21
BATTERY_ADC_PIN = 35
BATTERY_DIVIDER = 2.0
BATTERY_EMPTY_V = 3.3  # 0 %
BATTERY_FULL_V = 4.2  # 100 %
