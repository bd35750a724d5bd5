"""HS_SITE data: where the servers of a node are and how to pick one.

A site lists servers; each server has an address, a public key and
interfaces (which protocol on which port, for queries and/or admin
requests). The JSON shape is the Handle.Net REST API's: ``primarySite`` and
``multiPrimary`` booleans, ``protocolVersion`` as text, ``hashOption``
omitted when it is the default (hash the whole handle).

:meth:`Site.server_for` implements Handle's rule for spreading handles over
a site's servers.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from idcore import limits
from idcore.errors import InvalidValue
from idcore.pubkey import PublicKey


class HashOption:
    """Which part of a handle chooses the server within a site."""

    BY_PREFIX = 0
    BY_SUFFIX = 1
    BY_ALL = 2


#: Protocols an interface may name, with their Handle wire codes.
PROTOCOLS = ("UDP", "TCP", "HTTP", "HTTPS")


@dataclass(frozen=True, slots=True)
class Interface:
    """One way to reach a server: protocol, port, and what it answers."""

    protocol: str
    port: int
    query: bool = True
    admin: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "admin": self.admin, "protocol": self.protocol, "port": self.port}

    @classmethod
    def from_json(cls, obj: Any) -> Interface:
        if not isinstance(obj, dict):
            raise InvalidValue("site interface must be an object")
        protocol = obj.get("protocol")
        if isinstance(protocol, str):
            protocol = protocol.upper()
        elif type(protocol) is int and 0 <= protocol < len(PROTOCOLS):
            protocol = PROTOCOLS[protocol]
        if protocol not in PROTOCOLS:
            raise InvalidValue(f"site interface protocol {obj.get('protocol')!r} is not one of {', '.join(PROTOCOLS)}")
        port = obj.get("port")
        if type(port) is not int or not 0 < port < 65536:
            raise InvalidValue(f"site interface port {port!r} must be an integer in 1..65535")
        query, admin = obj.get("query", True), obj.get("admin", False)
        if type(query) is not bool or type(admin) is not bool:
            raise InvalidValue("site interface 'query' and 'admin' must be true or false")
        return cls(protocol, port, query, admin)


@dataclass(frozen=True, slots=True)
class Server:
    """One server of a site."""

    server_id: int
    address: str
    interfaces: tuple[Interface, ...]
    public_key: PublicKey | None = None

    def to_json(self) -> dict[str, Any]:
        key: dict[str, Any]
        if self.public_key is None:
            key = {"format": "base64", "value": ""}
        else:
            key = {"format": "key", "value": self.public_key.to_json()}
        return {
            "serverId": self.server_id,
            "address": self.address,
            "publicKey": key,
            "interfaces": [i.to_json() for i in self.interfaces],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Server:
        if not isinstance(obj, dict):
            raise InvalidValue("site server must be an object")
        server_id = obj.get("serverId", 1)
        if type(server_id) is not int or server_id < 0:
            raise InvalidValue(f"site serverId {server_id!r} must be a non-negative integer")
        address = obj.get("address")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise InvalidValue(f"site server address {address!r} is not an IPv4 or IPv6 address") from None
        interfaces = obj.get("interfaces")
        if not isinstance(interfaces, list) or not interfaces:
            raise InvalidValue(f"site server {server_id} needs a non-empty 'interfaces' list")
        key = obj.get("publicKey")
        public_key = None
        if isinstance(key, dict) and key.get("format") == "key":
            public_key = PublicKey.from_json(key.get("value"))
        elif key is not None and not (isinstance(key, dict) and key.get("format") == "base64" and key.get("value") == ""):
            raise InvalidValue(f"site server {server_id} publicKey must be a 'key' (JWK) or empty")
        return cls(server_id, address, tuple(Interface.from_json(i) for i in interfaces), public_key)

    def interface(self, *protocols: str, admin: bool = False) -> Interface | None:
        """The first interface speaking one of ``protocols`` (for queries, or admin)."""
        for iface in self.interfaces:
            if iface.protocol in protocols and (iface.admin if admin else iface.query):
                return iface
        return None


@dataclass(frozen=True, slots=True)
class Site:
    """HS_SITE data: the servers of one node (a primary or a mirror)."""

    servers: tuple[Server, ...]
    serial_number: int = 1
    primary: bool = True
    multi_primary: bool = False
    hash_option: int = HashOption.BY_ALL
    hash_filter: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    version: int = 1
    protocol_version: str = "2.10"

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidValue("a site needs at least one server")
        if len(self.servers) > limits.MAX_SITE_SERVERS:
            raise InvalidValue(f"a site lists {len(self.servers)} servers; the limit is {limits.MAX_SITE_SERVERS}")
        if self.hash_option not in (HashOption.BY_PREFIX, HashOption.BY_SUFFIX, HashOption.BY_ALL):
            raise InvalidValue(f"site hashOption {self.hash_option!r} must be 0 (prefix), 1 (suffix) or 2 (all)")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "protocolVersion": self.protocol_version,
            "serialNumber": self.serial_number,
            "primarySite": self.primary,
            "multiPrimary": self.multi_primary,
        }
        if self.hash_option != HashOption.BY_ALL:
            out["hashOption"] = self.hash_option
        if self.hash_filter:
            out["hashFilter"] = self.hash_filter
        out["attributes"] = [{"name": n, "value": v} for n, v in self.attributes]
        out["servers"] = [s.to_json() for s in self.servers]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Site:
        """Parse site JSON as the REST API shows it.

        Raises:
            InvalidValue: naming the member that is missing or malformed.
        """
        if not isinstance(obj, dict):
            raise InvalidValue("HS_SITE data must be an object")
        servers = obj.get("servers")
        if not isinstance(servers, list):
            raise InvalidValue("HS_SITE data needs a 'servers' list")
        attributes = obj.get("attributes", [])
        if not isinstance(attributes, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("value"), str)
            for a in attributes
        ):
            raise InvalidValue("HS_SITE 'attributes' must be a list of {name, value} text pairs")
        version, serial = obj.get("version", 1), obj.get("serialNumber", 1)
        protocol_version = obj.get("protocolVersion", "2.10")
        primary, multi = obj.get("primarySite", True), obj.get("multiPrimary", False)
        hash_option, hash_filter = obj.get("hashOption", HashOption.BY_ALL), obj.get("hashFilter", "")
        if type(version) is not int or type(serial) is not int or not isinstance(protocol_version, str):
            raise InvalidValue("HS_SITE 'version' and 'serialNumber' must be integers, 'protocolVersion' text")
        if type(primary) is not bool or type(multi) is not bool:
            raise InvalidValue("HS_SITE 'primarySite' and 'multiPrimary' must be true or false")
        if type(hash_option) is not int or not isinstance(hash_filter, str):
            raise InvalidValue("HS_SITE 'hashOption' must be an integer and 'hashFilter' text")
        return cls(
            servers=tuple(Server.from_json(s) for s in servers),
            serial_number=serial,
            primary=primary,
            multi_primary=multi,
            hash_option=hash_option,
            hash_filter=hash_filter,
            attributes=tuple((a["name"], a["value"]) for a in attributes),
            version=version,
            protocol_version=protocol_version,
        )

    def server_for(self, handle: str) -> Server:
        """The server responsible for ``handle`` under Handle's hashing rule.

        The hashed part (prefix, suffix or whole handle, by ``hash_option``)
        is ASCII-upper-cased and MD5-hashed; the digest's last four bytes,
        read as a signed big-endian integer and made non-negative, modulo the
        server count pick the server's position in the list.
        """
        if len(self.servers) == 1:
            return self.servers[0]
        prefix, slash, suffix = handle.partition("/")
        if self.hash_option == HashOption.BY_PREFIX:
            part = prefix if slash else "0.NA"
        elif self.hash_option == HashOption.BY_SUFFIX:
            part = suffix if slash else handle
        else:
            part = handle
        upper = part.encode("utf-8").upper()  # bytes.upper() touches ASCII letters only
        number = abs(int.from_bytes(hashlib.md5(upper).digest()[12:16], "big", signed=True))
        return self.servers[number % len(self.servers)]
