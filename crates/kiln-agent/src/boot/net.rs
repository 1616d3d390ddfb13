//! Interface and route set-up with the classic `SIOC*` ioctls: three calls
//! do what the shell /init needed four forks of `ip` for. (A netlink crate
//! would be the general tool; these few fixed requests do not need one, and
//! the agent binary's size is boot time under TCG.)
//!
//! IPv6 needs nothing here: passt's router advertisement makes the kernel
//! add an address (SLAAC) and a default route on its own.

#![allow(unsafe_code)] // ioctl(2) on a plain datagram socket, with C structs.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::params::Ipv4Net;

/// A socket to send interface ioctls on.
pub struct NetConfig {
    sock: OwnedFd,
}

impl NetConfig {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor owned by nothing else.
        Ok(Self {
            sock: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// `ip link set IFACE up`.
    pub fn up(&self, iface: &str) -> io::Result<()> {
        let mut req = ifreq(iface)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    /// `ip addr add ADDR/N dev IFACE`: the address, then the netmask, which
    /// makes the kernel add the subnet's route.
    pub fn set_address(&self, iface: &str, net: Ipv4Net) -> io::Result<()> {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_addr = sockaddr(net.addr);
        self.ioctl(libc::SIOCSIFADDR, &mut req)?;
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_netmask = sockaddr(net.netmask());
        self.ioctl(libc::SIOCSIFNETMASK, &mut req)
    }

    /// `ip route add default via GATEWAY`.
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        // SAFETY: rtentry is a C struct for which all-zero is valid.
        let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
        route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_gateway = sockaddr(gateway);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        // SAFETY: SIOCADDRT reads one rtentry, which outlives the call.
        let rc = unsafe {
            libc::ioctl(
                self.sock.as_raw_fd(),
                libc::SIOCADDRT,
                &mut route as *mut libc::rtentry,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn ioctl(&self, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every request used here reads or writes one ifreq, which
        // outlives the call.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), request, req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An ifreq naming `iface`, the rest zero.
fn ifreq(iface: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is a C struct for which all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    // The name must leave room for its NUL.
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// `addr` as the generic `sockaddr` the ioctls take (a `sockaddr_in`).
fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and
    // sockaddr has no invalid bit patterns.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_carries_the_address_in_network_order() {
        let sa = sockaddr(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data: 2 bytes of port, then the address.
        let bytes: Vec<u8> = sa.sa_data[2..6].iter().map(|&b| b as u8).collect();
        assert_eq!(bytes, [10, 0, 2, 15]);
    }

    #[test]
    fn interface_names_must_fit() {
        assert!(ifreq("eth0").is_ok());
        assert!(ifreq("").is_err());
        assert!(ifreq("a-very-long-interface-name").is_err());
        assert!(ifreq("et\0h").is_err());
    }

    #[test]
    fn an_unknown_interface_is_an_error_not_a_crash() {
        let net = NetConfig::new().expect("socket");
        let err = net.up("kiln-nonesuch").expect_err("no such interface");
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    }
}
