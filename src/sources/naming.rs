//! How names from the system become segments of a dotted service name.
//!
//! A service is `<source>.<instance>.<metric>`, such as `interface.eth0_2.rx_bytes`; Graphite
//! splits paths at dots, so an instance is always exactly one segment: dots, slashes, white space
//! and control characters in it become `_`. A mount point becomes `root` for `/` and otherwise
//! loses its leading slash and has its other slashes turned into `-` (`/boot/efi` is `boot-efi`).

/// A service name built in place: a fixed `<source>.<instance>.` stem and a metric after it, so
/// a source builds all its names in one reused buffer.
#[derive(Debug, Default)]
pub struct ServiceName {
    buf: String,
    stem: usize,
}

impl ServiceName {
    /// Starts the names of one instance: the stem becomes `<source>.<instance>.`.
    pub fn start(&mut self, source: &str, instance: &str) {
        self.buf.clear();
        self.buf.push_str(source);
        self.buf.push('.');
        push_segment(&mut self.buf, instance);
        self.buf.push('.');
        self.stem = self.buf.len();
    }

    /// Starts the names of one mounted file system, whose mount point is the instance.
    pub fn start_mount(&mut self, source: &str, mount_point: &str) {
        self.buf.clear();
        self.buf.push_str(source);
        self.buf.push('.');
        match mount_point.trim_start_matches('/') {
            "" => self.buf.push_str("root"),
            rest => {
                for (i, part) in rest.split('/').enumerate() {
                    if i > 0 {
                        self.buf.push('-');
                    }
                    push_segment(&mut self.buf, part);
                }
            }
        }
        self.buf.push('.');
        self.stem = self.buf.len();
    }

    /// The full name of `metric` under the current stem.
    pub fn with(&mut self, metric: &str) -> &str {
        self.buf.truncate(self.stem);
        self.buf.push_str(metric);
        &self.buf
    }
}

/// Appends `raw` as one segment: dots, slashes, white space and control characters become `_`.
pub fn push_segment(out: &mut String, raw: &str) {
    out.extend(raw.chars().map(|c| {
        if c == '.' || c == '/' || c.is_whitespace() || c.is_control() {
            '_'
        } else {
            c
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_one_segment() {
        let mut n = ServiceName::default();
        n.start("interface", "eth0.2");
        assert_eq!(n.with("rx_bytes"), "interface.eth0_2.rx_bytes");
        assert_eq!(n.with("tx_bytes"), "interface.eth0_2.tx_bytes");
        n.start("thermal", "Package id 0");
        assert_eq!(n.with("temperature"), "thermal.Package_id_0.temperature");
    }

    #[test]
    fn mount_points_become_one_segment() {
        let mut n = ServiceName::default();
        for (mount, name) in [
            ("/", "df.root.used"),
            ("/overlay", "df.overlay.used"),
            ("/boot/efi", "df.boot-efi.used"),
            ("/srv/a.b c", "df.srv-a_b_c.used"),
        ] {
            n.start_mount("df", mount);
            assert_eq!(n.with("used"), name);
        }
    }
}
