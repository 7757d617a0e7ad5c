"""PyKMIP's client (kmip.pie.client.ProxyKmipClient) against vmseal-kmsd:
the life of a key, attributes, locate, register, errors. Exits non-zero
on the first wrong answer."""
import sys

from kmip.core import enums
from kmip.core import exceptions as core_exceptions
from kmip.core.factories import attributes as attr_factory
from kmip.pie import client, exceptions, objects

d, port = sys.argv[1], int(sys.argv[2])


def connect(name, version=None):
    c = client.ProxyKmipClient(
        hostname='127.0.0.1', port=port,
        cert=f'{d}/clients/{name}/{name}.crt', key=f'{d}/clients/{name}/{name}.key',
        ca=f'{d}/ca.crt', ssl_version='PROTOCOL_TLSv1_2', config_file='/dev/null',
        kmip_version=version)
    c.open()
    return c


def check(cond, what):
    if not cond:
        print('FAIL:', what)
        sys.exit(1)
    print('ok', what)


def expect_failure(fn, reason, what):
    try:
        fn()
    except (exceptions.KmipOperationFailure, core_exceptions.OperationFailure) as e:
        check(e.reason == reason, f'{what} -> {e.reason} ({e})')
        return
    check(False, f'{what} should fail with {reason}')


af = attr_factory.AttributeFactory()
c = connect('alice')

# create, get (32 bytes), names, state
uid = c.create(enums.CryptographicAlgorithm.AES, 256, name='pykmip-key-1',
               cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT,
                                         enums.CryptographicUsageMask.DECRYPT])
check(isinstance(uid, str) and uid, f'create -> {uid}')
key = c.get(uid)
check(len(key.value) == 32, 'get returns 32 bytes')
check(key.cryptographic_algorithm == enums.CryptographicAlgorithm.AES and
      key.cryptographic_length == 256, 'get returns AES-256')
uid128 = c.create(enums.CryptographicAlgorithm.AES, 128, name='pykmip-key-128')
check(len(c.get(uid128).value) == 16, 'AES-128 get returns 16 bytes')
check(c.get(uid).value != c.get(uid128).value[:16] + c.get(uid128).value, 'keys differ')

_, attrs = c.get_attributes(uid, ['State', 'Cryptographic Length', 'Name', 'Initial Date'])
byname = {a.attribute_name.value: a.attribute_value for a in attrs}
check(byname['State'].value == enums.State.PRE_ACTIVE, 'new key is Pre-Active')
check(byname['Cryptographic Length'].value == 256, 'Cryptographic Length 256')
check(byname['Name'].name_value.value == 'pykmip-key-1', 'Name attribute')
check('Initial Date' in byname, 'Initial Date present')
_, allattrs = c.get_attributes(uid)
check(len(allattrs) >= 8, f'all attributes ({len(allattrs)})')
names = c.get_attribute_list(uid)
check({'State', 'Name', 'Unique Identifier', 'Cryptographic Usage Mask',
       'Last Change Date'} <= set(names), 'get_attribute_list')

# locate by name, by object type + state, with maximum items
found = c.locate(attributes=[af.create_attribute(enums.AttributeType.NAME, 'pykmip-key-1')])
check(found == [uid], f'locate by name -> {found}')
found = c.locate(attributes=[
    af.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.SYMMETRIC_KEY),
    af.create_attribute(enums.AttributeType.STATE, enums.State.PRE_ACTIVE)])
check(set(found) == {uid, uid128}, f'locate by type+state -> {found}')
found = c.locate(maximum_items=1)
check(len(found) == 1, 'locate maximum_items=1')

# modify and delete an attribute (KMIP 1.x payloads)
from kmip.core import primitives
from kmip.core.attributes import Name  # noqa: F401
newname = af.create_attribute(enums.AttributeType.NAME, 'pykmip-key-1-renamed')
_, modified = c.modify_attribute(unique_identifier=uid, attribute=newname)
check(modified.attribute_value.name_value.value == 'pykmip-key-1-renamed', 'modify_attribute')
found = c.locate(attributes=[af.create_attribute(enums.AttributeType.NAME, 'pykmip-key-1-renamed')])
check(found == [uid], 'locate finds the new name')
_, deleted = c.delete_attribute(unique_identifier=uid, attribute_name='Name', attribute_index=0)
check(deleted.attribute_value.name_value.value == 'pykmip-key-1-renamed', 'delete_attribute')
check('Name' not in c.get_attribute_list(uid), 'Name is gone')
expect_failure(lambda: c.delete_attribute(unique_identifier=uid, attribute_name='State',
                                          attribute_index=0),
               enums.ResultReason.PERMISSION_DENIED, 'State cannot be deleted')

# activate, revoke, destroy: the KMIP states
expect_failure(lambda: c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid),
               enums.ResultReason.ILLEGAL_OPERATION, 'revoke of a Pre-Active key')
c.activate(uid)
_, attrs = c.get_attributes(uid, ['State', 'Activation Date'])
byname = {a.attribute_name.value: a.attribute_value for a in attrs}
check(byname['State'].value == enums.State.ACTIVE, 'activate -> Active')
check('Activation Date' in byname, 'Activation Date set')
expect_failure(lambda: c.activate(uid), enums.ResultReason.PERMISSION_DENIED, 'activate twice')
expect_failure(lambda: c.destroy(uid), enums.ResultReason.PERMISSION_DENIED, 'destroy of an Active key')
c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid, revocation_message='retired')
_, attrs = c.get_attributes(uid, ['State', 'Deactivation Date'])  # PyKMIP cannot decode Revocation Reason
byname = {a.attribute_name.value: a.attribute_value for a in attrs}
check(byname['State'].value == enums.State.DEACTIVATED, 'revoke -> Deactivated')
check('Deactivation Date' in byname, 'Deactivation Date set')
check(len(c.get(uid).value) == 32, 'a Deactivated key can still be read')
c.destroy(uid)
_, attrs = c.get_attributes(uid, ['State', 'Destroy Date'])
byname = {a.attribute_name.value: a.attribute_value for a in attrs}
check(byname['State'].value == enums.State.DESTROYED, 'destroy -> Destroyed')
expect_failure(lambda: c.get(uid), enums.ResultReason.KEY_VALUE_NOT_PRESENT, 'get of a Destroyed key')

# compromise: any state -> Compromised, then Destroyed Compromised
c.activate(uid128)
c.revoke(enums.RevocationReasonCode.KEY_COMPROMISE, uid128)
_, attrs = c.get_attributes(uid128, ['State', 'Compromise Date'])
byname = {a.attribute_name.value: a.attribute_value for a in attrs}
check(byname['State'].value == enums.State.COMPROMISED, 'compromise -> Compromised')
c.destroy(uid128)
_, attrs = c.get_attributes(uid128, ['State'])
check(attrs[0].attribute_value.value == enums.State.DESTROYED_COMPROMISED, 'Destroyed Compromised')

# register a symmetric key and secret data; get them back
material = bytes(range(32))
sk = objects.SymmetricKey(enums.CryptographicAlgorithm.AES, 256, material, name='registered')
ruid = c.register(sk)
check(c.get(ruid).value == material, 'register + get symmetric key')
sd = objects.SecretData(b'correct horse battery staple', enums.SecretDataType.PASSWORD, name='pw')
suid = c.register(sd)
got = c.get(suid)
check(got.value == b'correct horse battery staple', 'register + get secret data')

# errors
expect_failure(lambda: c.get('999999'), enums.ResultReason.ITEM_NOT_FOUND, 'get of a missing object')
expect_failure(lambda: c.create(enums.CryptographicAlgorithm.AES, 100),
               enums.ResultReason.INVALID_FIELD, 'AES-100 refused')
expect_failure(lambda: c.create_key_pair(enums.CryptographicAlgorithm.RSA, 2048),
               enums.ResultReason.OPERATION_NOT_SUPPORTED, 'CreateKeyPair not supported')
c.close()

# another identity may not touch alice's key
b = connect('bob')
expect_failure(lambda: b.get(ruid), enums.ResultReason.PERMISSION_DENIED, 'bob cannot get alice\'s key')
expect_failure(lambda: b.destroy(ruid), enums.ResultReason.PERMISSION_DENIED, 'bob cannot destroy it')
check(b.locate() == [], 'bob locates nothing of alice\'s')
b.close()

# the admin sees everything
a = connect('admin')
check(a.get(ruid).value == material, 'admin may get any key')
a.close()

# KMIP 1.4 and 1.0 conversations
for v in (enums.KMIPVersion.KMIP_1_4, enums.KMIPVersion.KMIP_1_0):
    cv = connect('alice', v)
    u = cv.create(enums.CryptographicAlgorithm.AES, 192)
    check(len(cv.get(u).value) == 24, f'{v.name}: create + get')
    cv.close()
print('RUID', ruid)
