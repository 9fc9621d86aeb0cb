//! Options written back as the query string that parses to them.

use std::time::Duration;

use super::{Codec, Options, Overflow};

impl Options {
    /// The query string (`a=1&b=2`, no `?`) that parses back to these
    /// options: every option that differs from its default, in the order
    /// of the option table.
    pub fn to_query(&self) -> String {
        let d = Options::default();
        let mut q: Vec<String> = Vec::new();
        let mut put = |k: &str, v: String| q.push(format!("{k}={v}"));
        if self.max_msg != d.max_msg || self.max_msg_given {
            put("max_msg", self.max_msg.to_string());
        }
        if self.mode != d.mode {
            put("mode", format!("{:04o}", self.mode));
        }
        if self.timeout != d.timeout {
            put("timeout", format_duration(self.timeout));
        }
        if self.handshake_timeout != d.handshake_timeout {
            put("handshake_timeout", format_duration(self.handshake_timeout));
        }
        if self.wait != d.wait {
            put("wait", self.wait.name().into());
        }
        if self.spin != d.spin {
            put("spin", format_duration(self.spin));
        }
        if self.coalesce != d.coalesce {
            put("coalesce", format_duration(self.coalesce));
        }
        if self.codec != d.codec {
            let name = match self.codec {
                Codec::Framed => "framed",
                Codec::Raw => "raw",
                Codec::Lines => "lines",
            };
            put("codec", name.into());
        }
        if self.crc != d.crc {
            put("crc", self.crc.to_string());
        }
        if let Some(h) = self.heartbeat {
            put("heartbeat", format_duration(h));
        }
        if self.max_conns != d.max_conns {
            put("max_conns", self.max_conns.to_string());
        }
        if self.max_pending != d.max_pending {
            put("max_pending", self.max_pending.to_string());
        }
        if self.max_fds != d.max_fds {
            put("max_fds", self.max_fds.to_string());
        }
        if self.persist != d.persist {
            put("persist", self.persist.to_string());
        }
        if self.duplex != (self.codec == Codec::Framed) {
            put("duplex", self.duplex.to_string());
        }
        if self.size != d.size {
            put("size", self.size.to_string());
        }
        if self.slots != d.slots {
            put("slots", self.slots.to_string());
        }
        if self.overflow != d.overflow {
            let name = match self.overflow {
                Overflow::Block => "block",
                Overflow::DropOldest => "drop_oldest",
                Overflow::Fail => "fail",
            };
            put("overflow", name.into());
        }
        if self.liveness != d.liveness {
            put("liveness", format_duration(self.liveness));
        }
        if let Some(n) = self.max_msgs {
            put("max_msgs", n.to_string());
        }
        if let Some(n) = self.from {
            put("from", n.to_string());
        }
        if self.history != d.history {
            put("history", self.history.to_string());
        }
        if let Some(n) = self.msg_size {
            put("msg_size", n.to_string());
        }
        if let Some(n) = self.retain {
            put("retain", n.to_string());
        }
        if let Some(a) = self.retain_age {
            put("retain_age", format_duration(a));
        }
        if self.durability != d.durability {
            let name = match self.durability {
                crate::journal::Durability::None => "none",
                crate::journal::Durability::Flush => "flush",
                crate::journal::Durability::Sync => "sync",
            };
            put("durability", name.into());
        }
        if self.proj != d.proj {
            put("proj", self.proj.to_string());
        }
        if self.msg_type != d.msg_type {
            put("type", self.msg_type.to_string());
        }
        q.join("&")
    }
}

/// A duration as `parse_duration` reads it back, in the largest unit that
/// keeps it exact.
fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", d.as_secs())
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Options, Scheme, TABLE};

    /// A value other than the default for every option of the table, and a
    /// scheme it applies to.
    const SAMPLES: &[(&str, Scheme, &str)] = &[
        ("max_msg", Scheme::Unix, "4096"),
        ("mode", Scheme::Unix, "0640"),
        ("timeout", Scheme::Tcp, "250ms"),
        ("handshake_timeout", Scheme::Tcp, "2s"),
        ("wait", Scheme::Shm, "spin"),
        ("spin", Scheme::Shm, "30us"),
        ("coalesce", Scheme::Pipe, "5us"),
        ("codec", Scheme::Unix, "lines"),
        ("crc", Scheme::Unix, "true"),
        ("heartbeat", Scheme::Tcp, "10s"),
        ("max_conns", Scheme::Unix, "7"),
        ("max_pending", Scheme::Unix, "3"),
        ("max_fds", Scheme::Unix, "9"),
        ("persist", Scheme::Shm, "true"),
        ("duplex", Scheme::Fifo, "false"),
        ("size", Scheme::Shm, "65536"),
        ("slots", Scheme::Shm, "8"),
        ("overflow", Scheme::Shm, "fail"),
        ("history", Scheme::Tcp, "5"),
        ("liveness", Scheme::Shm, "50ms"),
        ("max_msgs", Scheme::Mq, "4"),
        ("msg_size", Scheme::Mq, "512"),
        ("proj", Scheme::SysvMq, "7"),
        ("durability", Scheme::Journal, "sync"),
        ("retain", Scheme::Journal, "1000"),
        ("retain_age", Scheme::Journal, "1h"),
        ("from", Scheme::Journal, "12"),
        ("type", Scheme::SysvMq, "3"),
    ];

    /// The option names live in three places (the table, the parser, the
    /// query writer): every option of the table parses, changes the
    /// options, and comes back from `to_query` as what parses to the same
    /// options, so an option set in code (`Endpoint::with_options`) is
    /// never dropped from the URL.
    #[test]
    fn every_option_round_trips_through_the_query() {
        for (name, _) in TABLE {
            let sample = SAMPLES.iter().find(|(n, _, _)| n == name);
            let Some((_, scheme, value)) = sample else {
                panic!("no sample value for option `{name}`: add one to SAMPLES");
            };
            let query = format!("{name}={value}");
            let o = Options::parse(*scheme, Some(&query)).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(o, Options::parse(*scheme, None).unwrap(), "{query}");
            let back = o.to_query();
            assert!(back.contains(&format!("{name}=")), "{query} -> {back}");
            let again = Options::parse(*scheme, Some(&back)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, o, "{query} -> {back}");
        }
    }
}
