"""Replay vCenter 7.0.3's KMIP requests (VMSEAL_SHARED/kmip-vectors/
vcenter-7.0.3/*.request.hex) over TLS to a running vmseal-kmsd, one TLS
connection per group as vCenter opened them, and check every answer:

- it decodes in PyKMIP (kmip.core.messages.ResponseMessage.read);
- header: protocol version 1.1 as asked; batch count = request's;
- each item echoes Operation and Unique Batch Item ID, Result Status Success
  (the 3-item AddAttribute batches too);
- Create returns "1" then "2" (the vectors hard-code these UIDs; the store
  starts empty so ours follow);
- Get returns 32 bytes of AES-256; State is Pre-Active before Activate;
- GetAttributes of the x- attributes after AddAttribute returns the stored
  values (an extra connection replays 08-10 and 19-21 at the end).
"""
import glob
import os
import socket
import ssl
import struct
import sys

from kmip.core import enums, utils
from kmip.core.messages import messages

d, port, vectors = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(f'{d}/ca.crt')
ctx.load_cert_chain(f'{d}/clients/vcenter/vcenter.crt', f'{d}/clients/vcenter/vcenter.key')
ctx.check_hostname = True


def fail(msg):
    print('FAIL:', msg)
    sys.exit(1)


def load(path):
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            fail('connection closed early')
        buf += chunk
    return buf


def exchange(s, req):
    s.sendall(req)
    hdr = recv_exact(s, 8)
    (length,) = struct.unpack('>I', hdr[4:])
    return hdr + recv_exact(s, length)


def ttlv(buf):
    """Minimal TTLV reader (test side only): (tag, type, value) with
    structures as lists. PyKMIP 0.10 has no AddAttribute payloads, so the
    AddAttribute batches are read with this."""
    out = []
    i = 0
    while i < len(buf):
        tag = int.from_bytes(buf[i:i + 3], 'big')
        typ = buf[i + 3]
        (n,) = struct.unpack('>I', buf[i + 4:i + 8])
        v = buf[i + 8:i + 8 + n]
        if typ == 1:
            v = ttlv(v)
        elif typ in (2, 5):
            v = int.from_bytes(v, 'big')
        elif typ == 7:
            v = v.decode()
        out.append((tag, typ, v))
        i += 8 + (n + 7) // 8 * 8
    return out


def field(items, tag):
    return next((v for t, _, v in items if t == tag), None)


def fields(items, tag):
    return [v for t, _, v in items if t == tag]


T_BATCH_ITEM, T_OPERATION, T_UBI = 0x42000F, 0x42005C, 0x420093
T_REQ_PAYLOAD, T_RESP_PAYLOAD, T_RESULT_STATUS = 0x420079, 0x42007C, 0x42007F
T_UID, T_ATTRIBUTE, T_ATTR_NAME, T_ATTR_VALUE = 0x420094, 0x420008, 0x42000A, 0x42000B


def request_items(req):
    """(operation, unique batch item id, payload) of each request batch item."""
    (_, _, msg), = ttlv(req)
    return [(field(b, T_OPERATION), field(b, T_UBI), field(b, T_REQ_PAYLOAD))
            for b in fields(msg, T_BATCH_ITEM)]


def decode(resp):
    m = messages.ResponseMessage()
    m.read(utils.BytearrayStream(resp), kmip_version=enums.KMIPVersion.KMIP_1_1)
    return m


def attr_values(payload):
    return {a.attribute_name.value: a.attribute_value for a in (payload.attributes or [])}


def check_add_attribute(name, want, resp):
    """The 3-item AddAttribute batch: 3 Success items, each echoing
    Operation and Unique Batch Item ID, the UID and the attribute added."""
    (tag, _, msg), = ttlv(resp)
    if tag != 0x42007B:
        fail(f'{name}: not a Response Message')
    items = fields(msg, T_BATCH_ITEM)
    hdr = field(msg, 0x42007A)
    if field(hdr, 0x42000D) != len(want) or len(items) != len(want):
        fail(f'{name}: {len(items)} items for {len(want)} requested')
    for (op, ubi, req_payload), b in zip(want, items):
        if field(b, T_OPERATION) != op or field(b, T_UBI) != ubi:
            fail(f'{name}: Operation/Unique Batch Item ID not echoed')
        if field(b, T_RESULT_STATUS) != 0:
            fail(f'{name}: item {ubi.hex()} failed: {field(b, 0x42007D)}')
        p = field(b, T_RESP_PAYLOAD)
        uid = field(req_payload, T_UID)
        a = field(req_payload, T_ATTRIBUTE)
        ra = field(p, T_ATTRIBUTE)
        if field(p, T_UID) != uid or ra is None or \
                field(ra, T_ATTR_NAME) != field(a, T_ATTR_NAME) or \
                field(ra, T_ATTR_VALUE) != field(a, T_ATTR_VALUE):
            fail(f'{name}: AddAttribute answer does not echo the attribute')
        added[(uid, field(a, T_ATTR_NAME))] = field(a, T_ATTR_VALUE)


files = sorted(glob.glob(os.path.join(vectors, '*.request.hex')))
if len(files) != 36:
    fail(f'expected 36 vCenter requests, found {len(files)}')

# group into connections: each starts with a DiscoverVersions without a
# Unique Batch Item ID (README: files 01, 03, 05, 07, 12, ...)
groups = []
for f in files:
    items = request_items(load(f))
    if items[0][0] == enums.Operation.DISCOVER_VERSIONS.value and items[0][1] is None:
        groups.append([])
    groups[-1].append(f)
print(f'{len(files)} requests in {len(groups)} connections')

state_seen = {}
added = {}
n_items = 0
for group in groups:
    with socket.create_connection(('127.0.0.1', port), timeout=20) as raw:
        with ctx.wrap_socket(raw, server_hostname='localhost') as s:
            for f in group:
                name = os.path.basename(f).replace('.request.hex', '')
                req = load(f)
                want = request_items(req)
                resp = exchange(s, req)
                if want[0][0] == enums.Operation.ADD_ATTRIBUTE.value:
                    check_add_attribute(name, want, resp)
                    n_items += len(want)
                    print(f'ok {name}')
                    continue
                try:
                    m = decode(resp)
                except Exception as e:  # noqa: BLE001
                    fail(f'{name}: PyKMIP cannot decode our response: {e!r}')
                h = m.response_header
                if (h.protocol_version.major, h.protocol_version.minor) != (1, 1):
                    fail(f'{name}: answered in {h.protocol_version}')
                if h.batch_count.value != len(want) or len(m.batch_items) != len(want):
                    fail(f'{name}: {len(m.batch_items)} items for {len(want)} requested')
                for (op, ubi, _), b in zip(want, m.batch_items):
                    if b.result_status.value != enums.ResultStatus.SUCCESS:
                        fail(f'{name}: {b.result_status.value} {b.result_reason} {b.result_message}')
                    if b.operation is None or b.operation.value.value != op:
                        fail(f'{name}: operation not echoed')
                    got_ubi = b.unique_batch_item_id.value if b.unique_batch_item_id else None
                    if got_ubi != ubi:
                        fail(f'{name}: unique batch item id {got_ubi!r} != {ubi!r}')
                    n_items += 1
                    op = enums.Operation(op)
                    p = b.response_payload
                    if op == enums.Operation.DISCOVER_VERSIONS:
                        vs = [(v.major, v.minor) for v in p.protocol_versions]
                        if vs != [(1, 4), (1, 3), (1, 2), (1, 1), (1, 0)]:
                            fail(f'{name}: versions {vs}')
                    elif op == enums.Operation.QUERY:
                        if not p.vendor_identification or 'vmseal' not in p.vendor_identification:
                            fail(f'{name}: no vendor identification')
                    elif op == enums.Operation.CREATE:
                        expect = '1' if name.startswith('06') else '2'
                        if p.unique_identifier != expect:
                            fail(f'{name}: Create returned {p.unique_identifier}, vCenter expects {expect}')
                    elif op == enums.Operation.GET:
                        key = p.secret.key_block.key_value.key_material.value
                        if len(key) != 32:
                            fail(f'{name}: Get returned {len(key)} bytes')
                    elif op == enums.Operation.GET_ATTRIBUTES:
                        vals = attr_values(p)
                        if 'State' in vals:
                            state_seen[p.unique_identifier] = vals['State'].value
                        for k, v in vals.items():
                            if k.startswith('x-') and added.get((p.unique_identifier, k)) != v.value:
                                fail(f'{name}: {k} = {v.value!r}')
                    elif op == enums.Operation.ACTIVATE:
                        uid = p.unique_identifier.value
                        if state_seen.get(uid) != enums.State.PRE_ACTIVE:
                            fail(f'{name}: State before Activate was {state_seen.get(uid)}')
                print(f'ok {name}')

# after the AddAttribute batches, GetAttributes returns the stored values
checks = [('08-get-attributes', '1', 'x-Product_Version', '7.0.3 build-19480866'),
          ('09-get-attributes', '1', 'x-Vendor', 'VMware, Inc.'),
          ('10-get-attributes', '1', 'x-Product', 'VMware vSphere'),
          ('19-get-attributes', '2', 'x-Product_Version', '7.0.3 build-19480866'),
          ('20-get-attributes', '2', 'x-Vendor', 'VMware, Inc.'),
          ('21-get-attributes', '2', 'x-Product', 'VMware vSphere'),
          ('35-get-attributes', '1', 'x-Name', 'test01')]
with socket.create_connection(('127.0.0.1', port), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname='localhost') as s:
        for name, uid, attr, value in checks:
            m = decode(exchange(s, load(os.path.join(vectors, name + '.request.hex'))))
            p = m.batch_items[0].response_payload
            vals = attr_values(p)
            if p.unique_identifier != uid or attr not in vals or vals[attr].value != value:
                fail(f'{name} again: {attr} -> {vals.get(attr)}')
            print(f'ok {name} after AddAttribute: {attr} = {value!r}')
print(f'all {n_items} batch items answered Success')

# Locate by the custom attributes vCenter added (through PyKMIP's client)
from kmip.core import objects as kobjects, primitives  # noqa: E402
from kmip.pie import client as pie_client  # noqa: E402


def custom(name, value):
    return kobjects.Attribute(
        attribute_name=kobjects.Attribute.AttributeName(name),
        attribute_value=primitives.TextString(value, tag=enums.Tags.ATTRIBUTE_VALUE))


c = pie_client.ProxyKmipClient(hostname='127.0.0.1', port=port,
                               cert=f'{d}/clients/vcenter/vcenter.crt',
                               key=f'{d}/clients/vcenter/vcenter.key', ca=f'{d}/ca.crt',
                               config_file='/dev/null')
c.open()
found = c.locate(attributes=[custom('x-Vendor', 'VMware, Inc.')])
if sorted(found) != ['1', '2']:
    fail(f'Locate x-Vendor -> {found}')
found = c.locate(attributes=[custom('x-Name', 'test01')])
if found != ['1']:
    fail(f'Locate x-Name test01 -> {found}')
found = c.locate(attributes=[custom('x-Component', 'Virtual Machine'), custom('x-Vendor', 'VMware, Inc.')])
if found != ['1']:
    fail(f'Locate x-Component + x-Vendor -> {found}')
af = __import__('kmip.core.factories.attributes', fromlist=['AttributeFactory']).AttributeFactory()
found = c.locate(attributes=[af.create_attribute(enums.AttributeType.STATE, enums.State.ACTIVE)])
if sorted(found) != ['1', '2']:
    fail(f'Locate State Active -> {found}')
found = c.locate(maximum_items=1, attributes=[custom('x-Vendor', 'VMware, Inc.')])
if len(found) != 1:
    fail(f'Locate with Maximum Items 1 -> {found}')
c.close()
print('ok Locate by custom attributes, state and Maximum Items')
