//! The kernel command line's `kiln.*` parameters, as the guest's init reads
//! them. The same names as `images/initramfs/init` (the shell /init) reads:
//! the host writes one command line for both.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::transport::{DEFAULT_PORT_NAME, DEFAULT_VSOCK_PORT};

/// The channel to the host (`kiln.transport=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// The virtio-serial port [`BootParams::port`] (the default).
    #[default]
    Virtio,
    /// Listening on vsock port [`BootParams::vsock_port`].
    Vsock,
}

/// What the native init needs from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    pub hostname: String,
    /// How the agent reaches the host.
    pub transport: Transport,
    /// The virtio-serial port the agent talks on (virtio transport).
    pub port: String,
    /// The vsock port the agent listens on (vsock transport).
    pub vsock_port: u32,
    /// How long the boot waits for the channel's device to appear.
    pub port_timeout: Duration,
    /// Static eth0 configuration (`kiln.ip=A.B.C.D/N`).
    pub ip: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,
    /// The host's per-VM token (`kiln.token=`).
    pub token: Option<String>,
    /// Why the shell /init must do this boot instead, if it must.
    pub needs_shell: Option<String>,
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// The netmask of the prefix (`/24` is 255.255.255.0).
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length (0-32)"))?;
        Ok(Self { addr, prefix })
    }
}

impl Default for BootParams {
    fn default() -> Self {
        Self {
            hostname: "kiln".to_owned(),
            transport: Transport::Virtio,
            port: DEFAULT_PORT_NAME.to_owned(),
            vsock_port: DEFAULT_VSOCK_PORT,
            port_timeout: Duration::from_secs(10),
            ip: None,
            gateway: None,
            dns: None,
            token: None,
            needs_shell: None,
        }
    }
}

impl BootParams {
    /// Parses `/proc/cmdline`. Malformed values are reported in the returned
    /// warnings and otherwise ignored (the default stays), as the shell
    /// /init would carry on: a guest that boots and says what was wrong is
    /// easier to debug than one that stops.
    pub fn parse(cmdline: &str) -> (Self, Vec<String>) {
        let mut params = Self::default();
        let mut warnings = Vec::new();
        for arg in cmdline.split_whitespace() {
            let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
            match key {
                "kiln.hostname" | "hostname" => params.hostname = value.to_owned(),
                "kiln.port" => params.port = value.to_owned(),
                "kiln.transport" => match value {
                    "virtio" => params.transport = Transport::Virtio,
                    "vsock" => params.transport = Transport::Vsock,
                    _ => warnings.push(format!(
                        "kiln.transport={value}: unknown transport (virtio or vsock)"
                    )),
                },
                "kiln.vsock_port" => match value.parse() {
                    Ok(port) => params.vsock_port = port,
                    Err(_) => warnings.push(format!("kiln.vsock_port={value}: not a port number")),
                },
                "kiln.port_timeout" => match value.parse() {
                    Ok(secs) => params.port_timeout = Duration::from_secs(secs),
                    Err(_) => warnings.push(format!("kiln.port_timeout={value}: not a number")),
                },
                "kiln.ip" => match value.parse() {
                    Ok(net) => params.ip = Some(net),
                    Err(e) => warnings.push(format!("kiln.ip={value}: {e}")),
                },
                "kiln.gw" => parse_addr(&mut params.gateway, arg, value, &mut warnings),
                "kiln.dns" => parse_addr(&mut params.dns, arg, value, &mut warnings),
                "kiln.token" => params.token = Some(value.to_owned()),
                // The shell /init's own features: the boot-floor markers, a
                // console shell, tracing, a root disk; and asking for it.
                "kiln.marker" | "kiln.shell" | "kiln.debug" | "kiln.init"
                    if !(key == "kiln.init" && value == "native") =>
                {
                    params.needs_shell = Some(arg.to_owned());
                }
                "kiln.root" if value != "none" => params.needs_shell = Some(arg.to_owned()),
                _ => {}
            }
        }
        (params, warnings)
    }
}

fn parse_addr(slot: &mut Option<Ipv4Addr>, arg: &str, value: &str, warnings: &mut Vec<String>) {
    match value.parse() {
        Ok(addr) => *slot = Some(addr),
        Err(_) => warnings.push(format!("{arg}: not an IPv4 address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_host_writes() {
        let (p, warnings) = BootParams::parse(
            "console=ttyS0 panic=-1 quiet reboot=t kiln.ip=10.0.2.15/24 kiln.gw=10.0.2.2 \
             kiln.dns=10.0.2.3 kiln.token=abc123 kiln.hostname=kiln-vm-1\n",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.hostname, "kiln-vm-1");
        assert_eq!(
            p.ip,
            Some(Ipv4Net {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24
            })
        );
        assert_eq!(p.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(p.dns, Some(Ipv4Addr::new(10, 0, 2, 3)));
        assert_eq!(p.token.as_deref(), Some("abc123"));
        assert_eq!(p.port, DEFAULT_PORT_NAME);
        assert_eq!(p.transport, Transport::Virtio);
        assert_eq!(p.needs_shell, None);
    }

    #[test]
    fn the_vsock_transport_and_its_port() {
        let (p, warnings) = BootParams::parse("quiet kiln.transport=vsock kiln.token=t");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.transport, Transport::Vsock);
        assert_eq!(p.vsock_port, DEFAULT_VSOCK_PORT);
        assert_eq!(p.needs_shell, None);
        let (p, warnings) = BootParams::parse("kiln.transport=vsock kiln.vsock_port=5000");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((p.transport, p.vsock_port), (Transport::Vsock, 5000));
        // Later parameters win, as for every `kiln.*` one.
        let (p, _) = BootParams::parse("kiln.transport=vsock kiln.transport=virtio");
        assert_eq!(p.transport, Transport::Virtio);
    }

    #[test]
    fn a_bad_transport_or_vsock_port_keeps_the_default() {
        let (p, warnings) =
            BootParams::parse("kiln.transport=tcp kiln.vsock_port=-1 kiln.vsock_port=99999999999");
        assert_eq!(p.transport, Transport::Virtio);
        assert_eq!(p.vsock_port, DEFAULT_VSOCK_PORT);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("kiln.transport=tcp"), "{warnings:?}");
        assert!(warnings[1].contains("kiln.vsock_port=-1"), "{warnings:?}");
    }

    #[test]
    fn defaults_without_kiln_parameters() {
        let (p, warnings) = BootParams::parse("console=ttyS0 quiet");
        assert!(warnings.is_empty());
        assert_eq!(p, BootParams::default());
    }

    #[test]
    fn shell_features_hand_the_boot_to_the_shell_init() {
        for arg in [
            "kiln.marker=1",
            "kiln.marker=port",
            "kiln.shell=1",
            "kiln.debug=1",
            "kiln.init=sh",
            "kiln.root=/dev/vda",
        ] {
            let (p, _) = BootParams::parse(&format!("quiet {arg} kiln.port=x"));
            assert_eq!(p.needs_shell.as_deref(), Some(arg), "{arg}");
            assert_eq!(p.port, "x");
        }
        for arg in ["kiln.root=none", "kiln.init=native"] {
            assert_eq!(BootParams::parse(arg).0.needs_shell, None, "{arg}");
        }
    }

    #[test]
    fn malformed_values_are_reported_and_ignored() {
        let (p, warnings) =
            BootParams::parse("kiln.ip=10.0.2/24 kiln.gw=x kiln.port_timeout=soon kiln.dns=");
        assert_eq!(p.ip, None);
        assert_eq!(p.gateway, None);
        assert_eq!(p.dns, None);
        assert_eq!(p.port_timeout, Duration::from_secs(10));
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("kiln.ip=10.0.2/24"), "{warnings:?}");
        let (p, warnings) = BootParams::parse("kiln.ip=10.0.2.15/33");
        assert_eq!(p.ip, None);
        assert!(warnings[0].contains("prefix length"), "{warnings:?}");
    }

    #[test]
    fn netmasks() {
        let net = |s: &str| s.parse::<Ipv4Net>().map(|n| n.netmask());
        assert_eq!(net("10.0.2.15/24"), Ok(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(net("10.0.2.15/0"), Ok(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(net("10.0.2.15/32"), Ok(Ipv4Addr::new(255, 255, 255, 255)));
        assert_eq!(net("10.0.2.15"), Ok(Ipv4Addr::new(255, 255, 255, 255)));
        assert_eq!(net("10.0.2.15/17"), Ok(Ipv4Addr::new(255, 255, 128, 0)));
    }
}
