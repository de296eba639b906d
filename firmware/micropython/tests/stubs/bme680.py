"""Stand-in for a BME680 driver on I2C: the test queues the values each
read returns (`readings`), or an OSError to simulate a bus fault."""

readings = []


class BME680_I2C:
    def __init__(self, i2c, address=0x77):
        if not readings:
            raise OSError("no BME680 reading scripted")
        r = readings.pop(0)
        if isinstance(r, Exception):
            raise r
        self.temperature, self.pressure, self.humidity, self.gas = r
