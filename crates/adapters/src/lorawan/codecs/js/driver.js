// The gateway's side of a codec's context: evaluated once per context with
// the codec's factory (its file wrapped in a function, compiled once) and
// returns the calls the engine makes. Each call runs the factory anew, so
// every uplink starts from the file's own top-level state, as under
// ChirpStack's fresh context per call; globals a call creates by
// assignment are deleted after it and the built-ins it replaced are put
// back, so nothing one device's uplink leaves behind reaches the next.
(function (factory, global, name) {
  "use strict";
  Object.defineProperty(global, name, {
    value: { decode: decode, encode: encode, entries: entries },
  });
  // What Node gives a script and vendors' test runs rely on, which QuickJS
  // lacks: a silent console, TextEncoder/TextDecoder (UTF-8), atob/btoa.
  function define(key, value) {
    if (!(key in global)) {
      Object.defineProperty(global, key, { value: value, writable: true, configurable: true });
    }
  }
  var noop = function () {};
  define("console", { log: noop, info: noop, warn: noop, error: noop, debug: noop, trace: noop });
  function TextEncoder() {}
  TextEncoder.prototype.encoding = "utf-8";
  TextEncoder.prototype.encode = function (text) {
    var s = unescape(encodeURIComponent(String(text === undefined ? "" : text)));
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  };
  function TextDecoder() {}
  TextDecoder.prototype.encoding = "utf-8";
  TextDecoder.prototype.decode = function (bytes) {
    if (bytes === undefined) return "";
    var view = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes;
    var s = "";
    for (var i = 0; i < view.length; i++) s += String.fromCharCode(view[i] & 0xff);
    try {
      return decodeURIComponent(escape(s));
    } catch (e) {
      return s;
    }
  };
  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);
  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  define("btoa", function (text) {
    var s = String(text), out = "";
    for (var i = 0; i < s.length; i += 3) {
      var a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      var n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
        (i + 1 < s.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < s.length ? B64[n & 63] : "=");
    }
    return out;
  });
  define("atob", function (text) {
    var s = String(text).replace(/[\s=]/g, ""), out = "", bits = 0, n = 0;
    for (var i = 0; i < s.length; i++) {
      var v = B64.indexOf(s[i]);
      if (v < 0) throw new Error("atob: not base64");
      n = (n << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += String.fromCharCode((n >> bits) & 0xff);
      }
    }
    return out;
  });
  var names = Object.getOwnPropertyNames(global);
  var kept = Object.create(null);
  for (var i = 0; i < names.length; i++) {
    kept[names[i]] = global[names[i]];
  }
  function tidy() {
    // A global made by assignment is enumerable; the built-ins are not,
    // so this list is empty after a well-behaved call.
    var now = Object.keys(global);
    for (var i = 0; i < now.length; i++) {
      var name = now[i];
      if (!(name in kept)) {
        try { delete global[name]; } catch (e) { /* non-configurable: stays */ }
      }
    }
    for (var k in kept) {
      if (!Object.is(global[k], kept[k])) {
        try {
          Object.defineProperty(global, k, { value: kept[k], writable: true, configurable: true, enumerable: false });
        } catch (e) { /* frozen by the codec: stays */ }
      }
    }
  }
  function kind(v) {
    if (v === null) return "null";
    if (Array.isArray(v)) return "an array";
    return "a " + typeof v;
  }
  function fail(message) {
    var e = new Error(message);
    e.gatewayResult = true;
    throw e;
  }
  function list(v) {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return [String(v)];
    return v.map(String);
  }
  // A Date whose "now" is `ms`: `new Date()`, `Date()` and `Date.now()`
  // read it, everything else is the real Date's. A test's fixed clock,
  // so that a codec dating its output from the machine's clock can be
  // judged against vectors written on another day.
  function stopped(Real, ms) {
    function Stopped() {
      if (!new.target) return new Real(ms).toString();
      var args = arguments.length === 0 ? [ms] : Array.prototype.slice.call(arguments);
      return Reflect.construct(Real, args, new.target);
    }
    Stopped.prototype = Real.prototype;
    Stopped.now = function () { return ms; };
    Stopped.UTC = Real.UTC;
    Stopped.parse = Real.parse;
    return Stopped;
  }
  function stopClock(clock) {
    if (typeof clock === "number") {
      // Put back by tidy(), as any replaced built-in is.
      Object.defineProperty(global, "Date", { value: stopped(kept.Date, clock), writable: true, configurable: true });
    }
  }
  function decode(bytes, fPort, recv, variables, clock) {
    try {
      stopClock(clock);
      var e = factory.call(global);
      var out;
      if (e.decodeUplink) {
        var recvTime = typeof recv === "number" ? new Date(recv) : recv;
        var input = { bytes: bytes, fPort: fPort, recvTime: recvTime, variables: variables };
        out = e.decodeUplink(input);
        if (out === null || typeof out !== "object" || Array.isArray(out)) {
          fail("decodeUplink returned " + kind(out) + ", expected an object with `data`");
        }
      } else if (e.Decode) {
        out = { data: e.Decode(fPort, bytes, variables) };
      } else if (e.Decoder) {
        out = { data: e.Decoder(bytes, fPort) };
      } else {
        fail("the script defines no decodeUplink, Decode or Decoder function");
      }
      var result = { data: out.data, errors: list(out.errors), warnings: list(out.warnings) };
      if (result.errors.length === 0 && (result.data === null || typeof result.data !== "object")) {
        fail((e.decodeUplink ? "decodeUplink's `data` is " : "the decoder returned ") + kind(result.data) + ", expected an object");
      }
      if (e.normalizeUplink && result.errors.length === 0) {
        try {
          var n = e.normalizeUplink({ data: result.data });
          if (n && typeof n === "object") result.normalized = n.data;
        } catch (err) {
          result.warnings.push("normalizeUplink: " + err);
        }
      }
      return JSON.stringify(result);
    } finally {
      tidy();
    }
  }
  function encode(data, fPort, variables, clock) {
    try {
      stopClock(clock);
      var e = factory.call(global);
      var out;
      if (e.encodeDownlink) {
        out = e.encodeDownlink({ data: data, variables: variables, fPort: fPort });
        if (out === null || typeof out !== "object" || Array.isArray(out)) {
          fail("encodeDownlink returned " + kind(out) + ", expected an object with `bytes`");
        }
      } else if (e.Encode) {
        out = { bytes: e.Encode(fPort, data, variables) };
      } else if (e.Encoder) {
        out = { bytes: e.Encoder(data, fPort) };
      } else {
        fail("the script defines no encodeDownlink, Encode or Encoder function");
      }
      var errors = list(out.errors);
      var bytes = out.bytes;
      if (errors.length === 0 && (bytes === null || typeof bytes !== "object" || typeof bytes.length !== "number")) {
        fail("the encoder's `bytes` is " + kind(bytes) + ", expected an array of numbers");
      }
      // Numbers, cast to bytes by the engine as ChirpStack does; a typed
      // array or a Buffer reads the same way.
      var plain = [];
      if (errors.length === 0) {
        for (var i = 0; i < bytes.length; i++) plain.push(Number(bytes[i]));
      }
      var port = out.fPort === undefined || out.fPort === null ? null : Number(out.fPort);
      return JSON.stringify({ bytes: plain, fPort: port, errors: errors, warnings: list(out.warnings) });
    } finally {
      tidy();
    }
  }
  function entries() {
    var e = factory.call(global);
    tidy();
    var has = [];
    for (var k in e) if (e[k]) has.push(k);
    return has.join(",");
  }
})
