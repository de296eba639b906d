// The gateway's side of a codec's context: evaluated once per context with
// the codec's factory (its file wrapped in a function, compiled once) and
// returns the calls the engine makes. Each call runs the factory anew, so
// every uplink starts from the file's own top-level state, as under
// ChirpStack's fresh context per call; globals a call creates by
// assignment are deleted after it and the built-ins it replaced are put
// back, so nothing one device's uplink leaves behind reaches the next.
(function (factory, global, name, source) {
  "use strict";
  // The built-ins the driver itself calls, taken before any codec runs: a
  // call that replaces one (`JSON.stringify = …`) cannot change how its
  // own result is read, nor how the built-ins are put back.
  var ownKeys = Reflect.ownKeys, getDesc = Object.getOwnPropertyDescriptor,
    defProp = Object.defineProperty, getProto = Object.getPrototypeOf,
    setProto = Object.setPrototypeOf, isExtensible = Object.isExtensible,
    keysOf = Object.keys, is = Object.is, freeze = Object.freeze,
    stringify = JSON.stringify, isArray = Array.isArray, apply = Reflect.apply,
    construct = Reflect.construct, toText = String, toNumber = Number,
    ErrorType = Error, DateType = Date, isFiniteNumber = Number.isFinite,
    indexOfText = String.prototype.indexOf, replaceText = String.prototype.replace;
  // False once a call left a built-in the driver could not put back (a
  // frozen `Math`, a non-configurable property it defined): the engine is
  // then rebuilt from the file before the next call.
  var intact = true;
  defProp(global, name, {
    value: freeze({
      decode: decode,
      encode: encode,
      entries: entries,
      intact: function () { return intact; },
    }),
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
  // A helper a codec defines on a built-in with defineProperty
  // (`Object.defineProperty(Number.prototype, "hex", {value: f})`, a common
  // pattern) is non-configurable by default: it could not be taken away
  // after the call, and the file's next run, defining it again, threw
  // "not configurable", so the codec never decoded. Definitions on a
  // guarded built-in are made configurable and recorded, and those the
  // built-in did not have are deleted after the call. Installed before
  // the built-ins are recorded, so putting them back keeps these.
  var defProps = Object.defineProperties, reflectDefine = Reflect.defineProperty;
  var definedOnBuiltins = [];
  function guardOf(target) {
    for (var i = 0; i < guarded.length; i++) if (guarded[i].target === target) return guarded[i];
    return null;
  }
  function loosened(target, key, desc) {
    if (desc === null || typeof desc !== "object" || guardOf(target) === null) return desc;
    var copy = { configurable: true };
    if ("value" in desc) copy.value = desc.value;
    if ("writable" in desc) copy.writable = desc.writable;
    if ("get" in desc) copy.get = desc.get;
    if ("set" in desc) copy.set = desc.set;
    if ("enumerable" in desc) copy.enumerable = desc.enumerable;
    definedOnBuiltins[definedOnBuiltins.length] = {
      target: target, key: typeof key === "symbol" ? key : toText(key),
    };
    return copy;
  }
  function loosenedAll(target, props) {
    if (props === null || typeof props !== "object" || guardOf(target) === null) return props;
    var keys = ownKeys(props), copy = {};
    for (var i = 0; i < keys.length; i++) {
      var d = getDesc(props, keys[i]);
      if (d && d.enumerable) copy[keys[i]] = loosened(target, keys[i], props[keys[i]]);
    }
    return copy;
  }
  var defineShims = {
    defineProperty: function defineProperty(o, k, d) { return defProp(o, k, loosened(o, k, d)); },
    defineProperties: function defineProperties(o, p) { return defProps(o, loosenedAll(o, p)); },
  };
  defProp(Object, "defineProperty", { value: defineShims.defineProperty, writable: true, configurable: true });
  defProp(Object, "defineProperties", { value: defineShims.defineProperties, writable: true, configurable: true });
  defProp(Reflect, "defineProperty", {
    value: function defineProperty(o, k, d) { return reflectDefine(o, k, loosened(o, k, d)); },
    writable: true, configurable: true,
  });
  function dropDefined() {
    for (var i = 0; i < definedOnBuiltins.length; i++) {
      var at = definedOnBuiltins[i], s = guardOf(at.target), had = false;
      for (var j = 0; s !== null && j < s.keys.length; j++) if (s.keys[j] === at.key) { had = true; break; }
      if (s !== null && !had) {
        try { if (!delete at.target[at.key]) intact = false; } catch (e) { intact = false; }
      }
    }
    definedOnBuiltins.length = 0;
  }
  // The built-ins a codec can change: the global object always; each
  // object or function it holds (with its prototype and what those
  // inherit from) when the file's text could write to it: an assignment
  // or `delete` through its name, or its name handed on (`var M = Math`,
  // `Object.assign(Math, …)`). Text that reaches built-ins without naming
  // them (`globalThis`, `__proto__`, `.constructor.prototype`,
  // `getPrototypeOf`, `eval`) guards them all. Checking every built-in
  // after every call cost 300 µs a call; checking what the text can
  // change costs next to nothing for the codecs that change nothing.
  var guarded = [];
  function guard(target) {
    if (target === null || (typeof target !== "object" && typeof target !== "function")) return;
    for (var i = 0; i < guarded.length; i++) if (guarded[i].target === target) return;
    var keys = ownKeys(target), descs = [], accessor = [];
    for (var j = 0; j < keys.length; j++) {
      var d = getDesc(target, keys[j]);
      // Read back by defineProperty, which would also see fields a codec
      // gave Object.prototype (`get`, `value`).
      setProto(d, null);
      descs[j] = d;
      accessor[j] = d.get !== undefined || d.set !== undefined;
    }
    guarded[guarded.length] = {
      target: target, keys: keys, descs: descs, accessor: accessor,
      enumerable: keysOf(target).length, proto: getProto(target), extensible: isExtensible(target),
    };
  }
  guard(global);
  var top = guarded[0];
  var reachesAll = /\b(globalThis|__proto__|setPrototypeOf|getPrototypeOf|eval|Function)\b|constructor\s*(\.\s*prototype|\[)|Reflect\s*\.\s*(set|defineProperty|deleteProperty)\b/.test(source);
  function mayChange(name) {
    if (source.indexOf(name) < 0) return false;
    var n = name.replace(/\$/g, "\\$");
    var member = "\\b" + n + "\\s*(\\.\\s*prototype\\s*)?(\\.\\s*[\\w$]+|\\[[^\\]\\n]*\\])\\s*";
    return new RegExp(member + "([-+*/%&|^]|<<|>>>?|\\*\\*|&&|\\|\\||\\?\\?)?=(?!=)|" + member + "(\\+\\+|--)").test(source) ||
      new RegExp("\\bdelete\\s+" + n + "\\b").test(source) ||
      new RegExp("[=(,:\\[?]\\s*" + n + "(\\s*\\.\\s*prototype)?\\s*([;,)\\]}:]|$)", "m").test(source);
  }
  for (var g = 0; g < top.keys.length; g++) {
    var value = top.descs[g].value;
    if (value === null || (typeof value !== "object" && typeof value !== "function")) continue;
    if (typeof top.keys[g] !== "string" || !(reachesAll || mayChange(top.keys[g]))) continue;
    var made = getDesc(value, "prototype");
    var shared = made && made.value;
    guard(value);
    guard(getProto(value));
    guard(shared);
    if (shared !== null && typeof shared === "object") guard(getProto(shared));
  }
  function restore(s) {
    var t = s.target, i;
    for (i = 0; i < s.keys.length; i++) {
      var k = s.keys[i], was = s.descs[i], changed;
      if (s.accessor[i]) {
        var d = getDesc(t, k);
        changed = d === undefined || d.get !== was.get || d.set !== was.set;
      } else {
        changed = !is(t[k], was.value);
      }
      if (changed) {
        try { defProp(t, k, was); } catch (e) { intact = false; }
      }
    }
    // A property made by assignment is enumerable; the built-ins' own are
    // not (but for Buffer's), so a count that grew names what to delete.
    // The global object's every name is compared: a global defined with
    // defineProperty is as much a global as one assigned.
    var list = s === top ? ownKeys : keysOf;
    if (list(t).length !== (s === top ? s.keys.length : s.enumerable)) {
      var now = list(t);
      for (i = 0; i < now.length; i++) {
        var known = false;
        for (var j = 0; j < s.keys.length; j++) if (s.keys[j] === now[i]) { known = true; break; }
        if (!known) {
          try { if (!delete t[now[i]]) intact = false; } catch (e) { intact = false; }
        }
      }
    }
    if (getProto(t) !== s.proto) {
      try { setProto(t, s.proto); } catch (e) { intact = false; }
    }
    if (isExtensible(t) !== s.extensible) intact = false;
  }
  function tidy() {
    for (var i = 0; i < guarded.length; i++) restore(guarded[i]);
    dropDefined();
  }
  function kind(v) {
    if (v === null) return "null";
    if (v === undefined) return "undefined";
    if (isArray(v)) return "an array";
    return (typeof v === "object" ? "an " : "a ") + typeof v;
  }
  function fail(message) {
    var e = new ErrorType(message);
    e.gatewayResult = true;
    throw e;
  }
  function list(v) {
    if (v === undefined || v === null) return [];
    if (!isArray(v)) return [toText(v)];
    var out = [];
    for (var i = 0; i < v.length; i++) out[i] = toText(v[i]);
    return out;
  }
  // A Date whose "now" is `ms`: `new Date()`, `Date()` and `Date.now()`
  // read it, everything else is the real Date's. A test's fixed clock,
  // so that a codec dating its output from the machine's clock can be
  // judged against vectors written on another day.
  function stopped(Real, ms) {
    function Stopped() {
      if (!new.target) return new Real(ms).toString();
      var args = [];
      for (var i = 0; i < arguments.length; i++) args[i] = arguments[i];
      if (args.length === 0) args[0] = ms;
      return construct(Real, args, new.target);
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
      defProp(global, "Date", { value: stopped(DateType, clock), writable: true, configurable: true });
    }
  }
  function decode(bytes, fPort, recv, variables, clock) {
    try {
      stopClock(clock);
      var e = apply(factory, global, []);
      var out;
      if (e.decodeUplink) {
        var recvTime = typeof recv === "number" ? new DateType(recv) : recv;
        var input = { bytes: bytes, fPort: fPort, recvTime: recvTime, variables: variables };
        out = e.decodeUplink(input);
        if (out === null || typeof out !== "object" || isArray(out)) {
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
          result.warnings[result.warnings.length] = "normalizeUplink: " + err;
        }
      }
      var text = stringify(result);
      // JSON has no NaN or Infinity: stringify writes null, which the
      // readings skip. Named here, they are said to be left out; the
      // search runs only when the text has a null at all.
      if (apply(indexOfText, text, ["null"]) >= 0) {
        var bad = [];
        nonFinite(result.data, "", 0, bad);
        if (bad.length > 0) {
          result.nonFinite = bad;
          text = stringify(result);
        }
      }
      return text;
    } finally {
      tidy();
    }
  }
  // As the readings name a value (readings.rs): keys joined with `_`,
  // `/`, `+`, `#` and control characters as `_`, 8 levels, 64 at most.
  function nonFinite(v, name, depth, out) {
    if (out.length >= 64) return;
    if (typeof v === "number") {
      if (!isFiniteNumber(v)) out[out.length] = [name === "" ? "value" : name, toText(v)];
      return;
    }
    if (v === null || typeof v !== "object" || depth >= 8) return;
    var keys = isArray(v) ? null : keysOf(v);
    var n = keys === null ? v.length : keys.length;
    for (var i = 0; i < n; i++) {
      var key = keys === null ? toText(i) : keys[i];
      var part = key === "" ? "_" : apply(replaceText, key, [/[\/+#\u0000-\u001f\u007f-\u009f]/g, "_"]);
      nonFinite(v[key], name === "" ? part : name + "_" + part, depth + 1, out);
    }
  }
  function encode(data, fPort, variables, clock) {
    try {
      stopClock(clock);
      var e = apply(factory, global, []);
      var out;
      if (e.encodeDownlink) {
        out = e.encodeDownlink({ data: data, variables: variables, fPort: fPort });
        if (out === null || typeof out !== "object" || isArray(out)) {
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
      // Numbers, cast to bytes as ChirpStack casts them (NaN 0, past 255
      // 255); a typed array or a Buffer reads the same way. Anything else
      // refuses the command, as ChirpStack's reading of numbers does: an
      // `undefined` (the command lacked the field the codec pushes) was
      // sent as 0, a string as its number.
      var plain = [];
      if (errors.length === 0) {
        for (var i = 0; i < bytes.length; i++) {
          var b = bytes[i];
          if (typeof b !== "number") {
            fail("the encoder's byte " + i + " is " + kind(b) + ", expected a number");
          }
          plain[i] = b !== b || b < 0 ? 0 : b > 255 ? 255 : b;
        }
      }
      var port = out.fPort === undefined || out.fPort === null ? null : toNumber(out.fPort);
      return stringify({ bytes: plain, fPort: port, errors: errors, warnings: list(out.warnings) });
    } finally {
      tidy();
    }
  }
  function entries() {
    var e = apply(factory, global, []);
    tidy();
    var has = [];
    for (var k in e) if (e[k]) has.push(k);
    return has.join(",");
  }
})
