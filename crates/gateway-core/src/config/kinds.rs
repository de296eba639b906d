//! What the `[[adapter]]` and `[[sink]]` registries have in common.
//!
//! Both generate, from one list of kinds, an enum with a variant per kind
//! implementing this crate's spec trait (accepted `type`s, dispatch on
//! `type`, `name`), the kind's name, and the config template in list order.
//! Written once here; each registry adds what is its own (adapters: owned
//! sections and `build`; sinks: `start`). The kind trait is a parameter, so
//! adapters and sinks keep their own traits.

/// Generates `$enum` (a variant per kind, `#[cfg]`s honoured), its `kind()`,
/// its `$spec` implementation (`KINDS`, `from_table` dispatching on `type`,
/// `name`; `$spec_items` add what else that trait asks for), and a free
/// `template()` concatenating the kinds' templates. `$kind` is a trait with
/// `KIND`, `from_table`, `name` and `template`; `$spec` is gateway-core's
/// trait of the registry ([`AdapterSpec`](crate::config::AdapterSpec) or
/// [`SinkSpec`](crate::config::SinkSpec)).
#[macro_export]
macro_rules! config_kinds {
    (
        kind_trait = $kind:path;
        spec_trait = $spec:path { $($spec_items:tt)* }
        $(#[$emeta:meta])*
        pub enum $enum:ident { $( $(#[$kmeta:meta])* $variant:ident => $kty:ty ),* $(,)? }
    ) => {
        $(#[$emeta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $( $(#[$kmeta])* $variant($kty), )*
        }

        impl $spec for $enum {
            const KINDS: &'static [&'static str] = &[
                $( $(#[$kmeta])* <$kty as $kind>::KIND, )*
            ];

            fn from_table(
                kind: &str,
                table: toml::Value,
                path: &str,
                problems: &mut $crate::config::Problems,
            ) -> Option<Self> {
                $(
                    $(#[$kmeta])*
                    if kind == <$kty as $kind>::KIND {
                        return <$kty as $kind>::from_table(table, path, problems)
                            .map(Self::$variant);
                    }
                )*
                let _ = (kind, table, path, problems);
                None
            }

            fn name(&self) -> &str {
                match *self {
                    $( $(#[$kmeta])* Self::$variant(ref c) => <$kty as $kind>::name(c), )*
                }
            }

            $($spec_items)*
        }

        impl $enum {
            /// Its `type`.
            pub fn kind(&self) -> &'static str {
                match *self {
                    $( $(#[$kmeta])* Self::$variant(_) => <$kty as $kind>::KIND, )*
                }
            }
        }

        /// The kinds' part of the `configfile` template, in list order.
        pub fn template() -> String {
            #[allow(unused_mut)]
            let mut out = String::new();
            $( $(#[$kmeta])* out.push_str(&<$kty as $kind>::template()); )*
            out
        }
    };
}
