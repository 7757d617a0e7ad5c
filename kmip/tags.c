/* KMIP names: tags, enumeration values, standard attributes, and which tags
 * hold key material. */
#include <stdlib.h>
#include <string.h>

#include <vmseal/kmip.h>

typedef struct {
    uint32_t tag;
    const char *name;
} tag_name;

/* Sorted by tag (KMIP 1.4 §9.1.3.1). */
static const tag_name tag_names[] = {
    {0x420001, "Activation Date"},
    {0x420002, "Application Data"},
    {0x420003, "Application Namespace"},
    {0x420004, "Application Specific Information"},
    {0x420005, "Archive Date"},
    {0x420006, "Asynchronous Correlation Value"},
    {0x420007, "Asynchronous Indicator"},
    {0x420008, "Attribute"},
    {0x420009, "Attribute Index"},
    {0x42000A, "Attribute Name"},
    {0x42000B, "Attribute Value"},
    {0x42000C, "Authentication"},
    {0x42000D, "Batch Count"},
    {0x42000E, "Batch Error Continuation Option"},
    {0x42000F, "Batch Item"},
    {0x420010, "Batch Order Option"},
    {0x420011, "Block Cipher Mode"},
    {0x420012, "Cancellation Result"},
    {0x420013, "Certificate"},
    {0x420014, "Certificate Identifier"},
    {0x420015, "Certificate Issuer"},
    {0x420016, "Certificate Issuer Alternative Name"},
    {0x420017, "Certificate Issuer Distinguished Name"},
    {0x420018, "Certificate Request"},
    {0x420019, "Certificate Request Type"},
    {0x42001A, "Certificate Subject"},
    {0x42001B, "Certificate Subject Alternative Name"},
    {0x42001C, "Certificate Subject Distinguished Name"},
    {0x42001D, "Certificate Type"},
    {0x42001E, "Certificate Value"},
    {0x42001F, "Common Template-Attribute"},
    {0x420020, "Compromise Date"},
    {0x420021, "Compromise Occurrence Date"},
    {0x420022, "Contact Information"},
    {0x420023, "Credential"},
    {0x420024, "Credential Type"},
    {0x420025, "Credential Value"},
    {0x420026, "Criticality Indicator"},
    {0x420027, "CRT Coefficient"},
    {0x420028, "Cryptographic Algorithm"},
    {0x420029, "Cryptographic Domain Parameters"},
    {0x42002A, "Cryptographic Length"},
    {0x42002B, "Cryptographic Parameters"},
    {0x42002C, "Cryptographic Usage Mask"},
    {0x42002D, "Custom Attribute"},
    {0x42002E, "D"},
    {0x42002F, "Deactivation Date"},
    {0x420030, "Derivation Data"},
    {0x420031, "Derivation Method"},
    {0x420032, "Derivation Parameters"},
    {0x420033, "Destroy Date"},
    {0x420034, "Digest"},
    {0x420035, "Digest Value"},
    {0x420036, "Encryption Key Information"},
    {0x420037, "G"},
    {0x420038, "Hashing Algorithm"},
    {0x420039, "Initial Date"},
    {0x42003A, "Initialization Vector"},
    {0x42003B, "Issuer"},
    {0x42003C, "Iteration Count"},
    {0x42003D, "IV/Counter/Nonce"},
    {0x42003E, "J"},
    {0x42003F, "Key"},
    {0x420040, "Key Block"},
    {0x420041, "Key Compression Type"},
    {0x420042, "Key Format Type"},
    {0x420043, "Key Material"},
    {0x420044, "Key Part Identifier"},
    {0x420045, "Key Value"},
    {0x420046, "Key Wrapping Data"},
    {0x420047, "Key Wrapping Specification"},
    {0x420048, "Last Change Date"},
    {0x420049, "Lease Time"},
    {0x42004A, "Link"},
    {0x42004B, "Link Type"},
    {0x42004C, "Linked Object Identifier"},
    {0x42004D, "MAC/Signature"},
    {0x42004E, "MAC/Signature Key Information"},
    {0x42004F, "Maximum Items"},
    {0x420050, "Maximum Response Size"},
    {0x420051, "Message Extension"},
    {0x420052, "Modulus"},
    {0x420053, "Name"},
    {0x420054, "Name Type"},
    {0x420055, "Name Value"},
    {0x420056, "Object Group"},
    {0x420057, "Object Type"},
    {0x420058, "Offset"},
    {0x420059, "Opaque Data Type"},
    {0x42005A, "Opaque Data Value"},
    {0x42005B, "Opaque Object"},
    {0x42005C, "Operation"},
    {0x42005D, "Operation Policy Name"},
    {0x42005E, "P"},
    {0x42005F, "Padding Method"},
    {0x420060, "Prime Exponent P"},
    {0x420061, "Prime Exponent Q"},
    {0x420062, "Prime Field Size"},
    {0x420063, "Private Exponent"},
    {0x420064, "Private Key"},
    {0x420065, "Private Key Template-Attribute"},
    {0x420066, "Private Key Unique Identifier"},
    {0x420067, "Process Start Date"},
    {0x420068, "Protect Stop Date"},
    {0x420069, "Protocol Version"},
    {0x42006A, "Protocol Version Major"},
    {0x42006B, "Protocol Version Minor"},
    {0x42006C, "Public Exponent"},
    {0x42006D, "Public Key"},
    {0x42006E, "Public Key Template-Attribute"},
    {0x42006F, "Public Key Unique Identifier"},
    {0x420070, "Put Function"},
    {0x420071, "Q"},
    {0x420072, "Q String"},
    {0x420073, "Qlength"},
    {0x420074, "Query Function"},
    {0x420075, "Recommended Curve"},
    {0x420076, "Replaced Unique Identifier"},
    {0x420077, "Request Header"},
    {0x420078, "Request Message"},
    {0x420079, "Request Payload"},
    {0x42007A, "Response Header"},
    {0x42007B, "Response Message"},
    {0x42007C, "Response Payload"},
    {0x42007D, "Result Message"},
    {0x42007E, "Result Reason"},
    {0x42007F, "Result Status"},
    {0x420080, "Revocation Message"},
    {0x420081, "Revocation Reason"},
    {0x420082, "Revocation Reason Code"},
    {0x420083, "Key Role Type"},
    {0x420084, "Salt"},
    {0x420085, "Secret Data"},
    {0x420086, "Secret Data Type"},
    {0x420087, "Serial Number"},
    {0x420088, "Server Information"},
    {0x420089, "Split Key"},
    {0x42008A, "Split Key Method"},
    {0x42008B, "Split Key Parts"},
    {0x42008C, "Split Key Threshold"},
    {0x42008D, "State"},
    {0x42008E, "Storage Status Mask"},
    {0x42008F, "Symmetric Key"},
    {0x420090, "Template"},
    {0x420091, "Template-Attribute"},
    {0x420092, "Time Stamp"},
    {0x420093, "Unique Batch Item ID"},
    {0x420094, "Unique Identifier"},
    {0x420095, "Usage Limits"},
    {0x420096, "Usage Limits Count"},
    {0x420097, "Usage Limits Total"},
    {0x420098, "Usage Limits Unit"},
    {0x420099, "Username"},
    {0x42009A, "Validity Date"},
    {0x42009B, "Validity Indicator"},
    {0x42009C, "Vendor Extension"},
    {0x42009D, "Vendor Identification"},
    {0x42009E, "Wrapping Method"},
    {0x42009F, "X"},
    {0x4200A0, "Y"},
    {0x4200A1, "Password"},
    {0x4200A2, "Device Identifier"},
    {0x4200A3, "Encoding Option"},
    {0x4200A4, "Extension Information"},
    {0x4200A5, "Extension Name"},
    {0x4200A6, "Extension Tag"},
    {0x4200A7, "Extension Type"},
    {0x4200A8, "Fresh"},
    {0x4200A9, "Machine Identifier"},
    {0x4200AA, "Media Identifier"},
    {0x4200AB, "Network Identifier"},
    {0x4200AC, "Object Group Member"},
    {0x4200AD, "Certificate Length"},
    {0x4200AE, "Digital Signature Algorithm"},
    {0x4200AF, "Certificate Serial Number"},
    {0x4200B0, "Device Serial Number"},
    {0x4200B1, "Issuer Alternative Name"},
    {0x4200B2, "Issuer Distinguished Name"},
    {0x4200B3, "Subject Alternative Name"},
    {0x4200B4, "Subject Distinguished Name"},
    {0x4200B5, "X.509 Certificate Identifier"},
    {0x4200B6, "X.509 Certificate Issuer"},
    {0x4200B7, "X.509 Certificate Subject"},
    {0x4200B8, "Key Value Location"},
    {0x4200B9, "Key Value Location Value"},
    {0x4200BA, "Key Value Location Type"},
    {0x4200BB, "Key Value Present"},
    {0x4200BC, "Original Creation Date"},
    {0x4200BD, "PGP Key"},
    {0x4200BE, "PGP Key Version"},
    {0x4200BF, "Alternative Name"},
    {0x4200C0, "Alternative Name Value"},
    {0x4200C1, "Alternative Name Type"},
    {0x4200C2, "Data"},
    {0x4200C3, "Signature Data"},
    {0x4200C4, "Data Length"},
    {0x4200C5, "Random IV"},
    {0x4200C6, "MAC Data"},
    {0x4200C7, "Attestation Type"},
    {0x4200C8, "Nonce"},
    {0x4200C9, "Nonce ID"},
    {0x4200CA, "Nonce Value"},
    {0x4200CB, "Attestation Measurement"},
    {0x4200CC, "Attestation Assertion"},
    {0x4200CD, "IV Length"},
    {0x4200CE, "Tag Length"},
    {0x4200CF, "Fixed Field Length"},
    {0x4200D0, "Counter Length"},
    {0x4200D1, "Initial Counter Value"},
    {0x4200D2, "Invocation Field Length"},
    {0x4200D3, "Attestation Capable Indicator"},
    {0x4200D4, "Offset Items"},
    {0x4200D5, "Located Items"},
    {0x4200D6, "Correlation Value"},
    {0x4200D7, "Init Indicator"},
    {0x4200D8, "Final Indicator"},
    {0x4200D9, "RNG Parameters"},
    {0x4200DA, "RNG Algorithm"},
    {0x4200DB, "DRBG Algorithm"},
    {0x4200DC, "FIPS186 Variation"},
    {0x4200DD, "Prediction Resistance"},
    {0x4200DE, "Random Number Generator"},
    {0x4200DF, "Validation Information"},
    {0x4200E0, "Validation Authority Type"},
    {0x4200E1, "Validation Authority Country"},
    {0x4200E2, "Validation Authority URI"},
    {0x4200E3, "Validation Version Major"},
    {0x4200E4, "Validation Version Minor"},
    {0x4200E5, "Validation Type"},
    {0x4200E6, "Validation Level"},
    {0x4200E7, "Validation Certificate Identifier"},
    {0x4200E8, "Validation Certificate URI"},
    {0x4200E9, "Validation Vendor URI"},
    {0x4200EA, "Validation Profile"},
    {0x4200EB, "Profile Information"},
    {0x4200EC, "Profile Name"},
    {0x4200ED, "Server URI"},
    {0x4200EE, "Server Port"},
    {0x4200EF, "Streaming Capability"},
    {0x4200F0, "Asynchronous Capability"},
    {0x4200F1, "Attestation Capability"},
    {0x4200F2, "Unwrap Mode"},
    {0x4200F3, "Destroy Action"},
    {0x4200F4, "Shredding Algorithm"},
    {0x4200F5, "RNG Mode"},
    {0x4200F6, "Client Registration Method"},
    {0x4200F7, "Capability Information"},
    {0x4200F8, "Key Wrap Type"},
    {0x4200F9, "Batch Undo Capability"},
    {0x4200FA, "Batch Continue Capability"},
    {0x4200FB, "PKCS#12 Friendly Name"},
    {0x4200FC, "Description"},
    {0x4200FD, "Comment"},
    {0x4200FE, "Authenticated Encryption Additional Data"},
    {0x4200FF, "Authenticated Encryption Tag"},
    {0x420100, "Salt Length"},
    {0x420101, "Mask Generator"},
    {0x420102, "Mask Generator Hashing Algorithm"},
    {0x420103, "P Source"},
    {0x420104, "Trailer Field"},
    {0x420105, "Client Correlation Value"},
    {0x420106, "Server Correlation Value"},
    {0x420107, "Digested Data"},
    {0x420108, "Certificate Subject CN"},
    {0x420109, "Certificate Subject O"},
    {0x42010A, "Certificate Subject OU"},
    {0x42010B, "Certificate Subject Email"},
    {0x42010C, "Certificate Subject C"},
    {0x42010D, "Certificate Subject ST"},
    {0x42010E, "Certificate Subject L"},
    {0x42010F, "Certificate Subject UID"},
    {0x420110, "Certificate Subject Serial Number"},
    {0x420111, "Certificate Subject Title"},
    {0x420112, "Certificate Subject DC"},
    {0x420113, "Certificate Subject DN Qualifier"},
    {0x420114, "Certificate Issuer CN"},
    {0x420115, "Certificate Issuer O"},
    {0x420116, "Certificate Issuer OU"},
    {0x420117, "Certificate Issuer Email"},
    {0x420118, "Certificate Issuer C"},
    {0x420119, "Certificate Issuer ST"},
    {0x42011A, "Certificate Issuer L"},
    {0x42011B, "Certificate Issuer UID"},
    {0x42011C, "Certificate Issuer Serial Number"},
    {0x42011D, "Certificate Issuer Title"},
    {0x42011E, "Certificate Issuer DC"},
    {0x42011F, "Certificate Issuer DN Qualifier"},
    {0x420120, "Sensitive"},
    {0x420121, "Always Sensitive"},
    {0x420122, "Extractable"},
    {0x420123, "Never Extractable"},
    {0x420124, "Replace Existing"},
    {0x54C001, "vmseal Store"},
    {0x54C002, "vmseal Node"},
    {0x54C003, "vmseal Facts Age"},
    {0x54C004, "vmseal Database"},
    {0x54C005, "vmseal Role"},
    {0x54C006, "vmseal Address"},
    {0x54C007, "vmseal Version"},
    {0x54C008, "vmseal Error"},
    {0x54C009, "vmseal Synchronous Commit"},
    {0x54C00A, "vmseal Synchronous Standby Names"},
    {0x54C00B, "vmseal Standby"},
    {0x54C00C, "vmseal Name"},
    {0x54C00D, "vmseal State"},
    {0x54C00E, "vmseal Sync State"},
    {0x54C00F, "vmseal Replay Lag"},
    {0x54C010, "vmseal Bytes Behind"},
    {0x54C011, "vmseal Cluster Node"},
    {0x54C012, "vmseal Seen Ago"},
    {0x54C013, "vmseal Standbys Total"},
    {0x54C014, "vmseal Nodes Total"},
};

static int cmp_tag(const void *key, const void *elem)
{
    uint32_t k = *(const uint32_t *)key;
    uint32_t e = ((const tag_name *)elem)->tag;
    return k < e ? -1 : k > e ? 1 : 0;
}

const char *vmseal_kmip_tag_name(uint32_t tag)
{
    const tag_name *t = bsearch(&tag, tag_names, sizeof(tag_names) / sizeof(tag_names[0]),
                                sizeof(tag_names[0]), cmp_tag);
    return t ? t->name : NULL;
}

uint32_t vmseal_kmip_tag_by_name(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof(tag_names) / sizeof(tag_names[0]); i++)
        if (strcmp(tag_names[i].name, name) == 0)
            return tag_names[i].tag;
    return 0;
}

const char *vmseal_ttlv_type_name(int type)
{
    static const char *const names[] = {
        NULL, "Structure", "Integer", "Long Integer", "Big Integer", "Enumeration",
        "Boolean", "Text String", "Byte String", "Date-Time", "Interval",
    };
    if (type < 1 || type > 10)
        return NULL;
    return names[type];
}

bool vmseal_kmip_tag_is_sensitive(uint32_t tag)
{
    switch (tag) {
    case VMSEAL_KMIP_TAG_KEY_MATERIAL:
    case VMSEAL_KMIP_TAG_KEY_VALUE:       /* a Byte String when the key is wrapped */
    case VMSEAL_KMIP_TAG_PASSWORD:
    case VMSEAL_KMIP_TAG_PRIVATE_EXPONENT:
    case VMSEAL_KMIP_TAG_PRIME_EXPONENT_P:
    case VMSEAL_KMIP_TAG_PRIME_EXPONENT_Q:
    case VMSEAL_KMIP_TAG_CRT_COEFFICIENT:
    case VMSEAL_KMIP_TAG_P:
    case VMSEAL_KMIP_TAG_Q:
    case VMSEAL_KMIP_TAG_D:
    case VMSEAL_KMIP_TAG_X:
    case VMSEAL_KMIP_TAG_KEY:
    case VMSEAL_KMIP_TAG_DATA:            /* Encrypt/Decrypt plaintext */
    case VMSEAL_KMIP_TAG_SECRET_DATA:
    case VMSEAL_KMIP_TAG_PRIVATE_KEY:
    case VMSEAL_KMIP_TAG_SPLIT_KEY:
        return true;
    default:
        return false;
    }
}

/* ---- enumeration value names --------------------------------------------- */

typedef struct {
    uint32_t value;
    const char *name;
} enum_name;

#define N(v, s) {v, s}
static const enum_name operations[] = {
    N(0x01, "Create"), N(0x02, "Create Key Pair"), N(0x03, "Register"), N(0x04, "Re-key"),
    N(0x05, "Derive Key"), N(0x06, "Certify"), N(0x07, "Re-certify"), N(0x08, "Locate"),
    N(0x09, "Check"), N(0x0A, "Get"), N(0x0B, "Get Attributes"), N(0x0C, "Get Attribute List"),
    N(0x0D, "Add Attribute"), N(0x0E, "Modify Attribute"), N(0x0F, "Delete Attribute"),
    N(0x10, "Obtain Lease"), N(0x11, "Get Usage Allocation"), N(0x12, "Activate"),
    N(0x13, "Revoke"), N(0x14, "Destroy"), N(0x15, "Archive"), N(0x16, "Recover"),
    N(0x17, "Validate"), N(0x18, "Query"), N(0x19, "Cancel"), N(0x1A, "Poll"), N(0x1B, "Notify"),
    N(0x1C, "Put"), N(0x1D, "Re-key Key Pair"), N(0x1E, "Discover Versions"), N(0x1F, "Encrypt"),
    N(0x20, "Decrypt"), N(0x21, "Sign"), N(0x22, "Signature Verify"), N(0x23, "MAC"),
    N(0x24, "MAC Verify"), N(0x25, "RNG Retrieve"), N(0x26, "RNG Seed"), N(0x27, "Hash"),
    N(0x28, "Create Split Key"), N(0x29, "Join Split Key"), N(0x2A, "Import"), N(0x2B, "Export"),
    {0, NULL}};
static const enum_name object_types[] = {
    N(0x01, "Certificate"), N(0x02, "Symmetric Key"), N(0x03, "Public Key"),
    N(0x04, "Private Key"), N(0x05, "Split Key"), N(0x06, "Template"), N(0x07, "Secret Data"),
    N(0x08, "Opaque Object"), N(0x09, "PGP Key"), {0, NULL}};
static const enum_name algorithms[] = {
    N(0x01, "DES"), N(0x02, "3DES"), N(0x03, "AES"), N(0x04, "RSA"), N(0x05, "DSA"),
    N(0x06, "ECDSA"), N(0x07, "HMAC-SHA1"), N(0x08, "HMAC-SHA224"), N(0x09, "HMAC-SHA256"),
    N(0x0A, "HMAC-SHA384"), N(0x0B, "HMAC-SHA512"), N(0x0C, "HMAC-MD5"), N(0x0D, "DH"),
    N(0x0E, "ECDH"), N(0x0F, "ECMQV"), N(0x10, "Blowfish"), N(0x11, "Camellia"), N(0x12, "CAST5"),
    N(0x13, "IDEA"), N(0x14, "MARS"), N(0x15, "RC2"), N(0x16, "RC4"), N(0x17, "RC5"),
    N(0x18, "SKIPJACK"), N(0x19, "Twofish"), N(0x1A, "EC"), N(0x1B, "One Time Pad"),
    N(0x1C, "ChaCha20"), N(0x1D, "Poly1305"), N(0x1E, "ChaCha20Poly1305"), N(0x1F, "SHA3-224"),
    N(0x20, "SHA3-256"), N(0x21, "SHA3-384"), N(0x22, "SHA3-512"), N(0x23, "HMAC-SHA3-224"),
    N(0x24, "HMAC-SHA3-256"), N(0x25, "HMAC-SHA3-384"), N(0x26, "HMAC-SHA3-512"),
    N(0x27, "SHAKE-128"), N(0x28, "SHAKE-256"), {0, NULL}};
static const enum_name states[] = {
    N(0x01, "Pre-Active"), N(0x02, "Active"), N(0x03, "Deactivated"), N(0x04, "Compromised"),
    N(0x05, "Destroyed"), N(0x06, "Destroyed Compromised"), {0, NULL}};
static const enum_name result_status[] = {
    N(0x00, "Success"), N(0x01, "Operation Failed"), N(0x02, "Operation Pending"),
    N(0x03, "Operation Undone"), {0, NULL}};
static const enum_name result_reasons[] = {
    N(0x01, "Item Not Found"), N(0x02, "Response Too Large"),
    N(0x03, "Authentication Not Successful"), N(0x04, "Invalid Message"),
    N(0x05, "Operation Not Supported"), N(0x06, "Missing Data"), N(0x07, "Invalid Field"),
    N(0x08, "Feature Not Supported"), N(0x09, "Operation Canceled By Requester"),
    N(0x0A, "Cryptographic Failure"), N(0x0B, "Illegal Operation"), N(0x0C, "Permission Denied"),
    N(0x0D, "Object archived"), N(0x0E, "Index Out of Bounds"),
    N(0x0F, "Application Namespace Not Supported"), N(0x10, "Key Format Type Not Supported"),
    N(0x11, "Key Compression Type Not Supported"), N(0x12, "Encoding Option Error"),
    N(0x13, "Key Value Not Present"), N(0x14, "Attestation Required"),
    N(0x15, "Attestation Failed"), N(0x16, "Sensitive"), N(0x17, "Not Extractable"),
    N(0x18, "Object Already Exists"), N(0x100, "General Failure"), {0, NULL}};
static const enum_name key_formats[] = {
    N(0x01, "Raw"), N(0x02, "Opaque"), N(0x03, "PKCS#1"), N(0x04, "PKCS#8"), N(0x05, "X.509"),
    N(0x06, "ECPrivateKey"), N(0x07, "Transparent Symmetric Key"),
    N(0x08, "Transparent DSA Private Key"), N(0x09, "Transparent DSA Public Key"),
    N(0x0A, "Transparent RSA Private Key"), N(0x0B, "Transparent RSA Public Key"),
    N(0x0C, "Transparent DH Private Key"), N(0x0D, "Transparent DH Public Key"),
    N(0x0E, "Transparent ECDSA Private Key"), N(0x0F, "Transparent ECDSA Public Key"),
    N(0x10, "Transparent ECDH Private Key"), N(0x11, "Transparent ECDH Public Key"),
    N(0x12, "Transparent ECMQV Private Key"), N(0x13, "Transparent ECMQV Public Key"),
    N(0x14, "Transparent EC Private Key"), N(0x15, "Transparent EC Public Key"),
    N(0x16, "PKCS#12"), {0, NULL}};
static const enum_name name_types[] = {
    N(0x01, "Uninterpreted Text String"), N(0x02, "URI"), {0, NULL}};
static const enum_name query_functions[] = {
    N(0x01, "Query Operations"), N(0x02, "Query Objects"), N(0x03, "Query Server Information"),
    N(0x04, "Query Application Namespaces"), N(0x05, "Query Extension List"),
    N(0x06, "Query Extension Map"), N(0x07, "Query Attestation Types"), N(0x08, "Query RNGs"),
    N(0x09, "Query Validations"), N(0x0A, "Query Profiles"), N(0x0B, "Query Capabilities"),
    N(0x0C, "Query Client Registration Methods"), {0, NULL}};
static const enum_name revocation_reasons[] = {
    N(0x01, "Unspecified"), N(0x02, "Key Compromise"), N(0x03, "CA Compromise"),
    N(0x04, "Affiliation Changed"), N(0x05, "Superseded"), N(0x06, "Cessation of Operation"),
    N(0x07, "Privilege Withdrawn"), {0, NULL}};
static const enum_name credential_types[] = {
    N(0x01, "Username and Password"), N(0x02, "Device"), N(0x03, "Attestation"), {0, NULL}};
static const enum_name batch_error_options[] = {
    N(0x01, "Continue"), N(0x02, "Stop"), N(0x03, "Undo"), {0, NULL}};
static const enum_name link_types[] = {
    N(0x101, "Certificate Link"), N(0x102, "Public Key Link"), N(0x103, "Private Key Link"),
    N(0x104, "Derivation Base Object Link"), N(0x105, "Derived Key Link"),
    N(0x106, "Replacement Object Link"), N(0x107, "Replaced Object Link"),
    N(0x108, "Parent Link"), N(0x109, "Child Link"), N(0x10A, "Previous Link"),
    N(0x10B, "Next Link"), N(0x10C, "PKCS#12 Certificate Link"),
    N(0x10D, "PKCS#12 Password Link"), {0, NULL}};
#undef N

const char *vmseal_kmip_enum_name(uint32_t tag, uint32_t value)
{
    const enum_name *t;
    switch (tag) {
    case VMSEAL_KMIP_TAG_OPERATION: t = operations; break;
    case VMSEAL_KMIP_TAG_OBJECT_TYPE: t = object_types; break;
    case VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM: t = algorithms; break;
    case VMSEAL_KMIP_TAG_STATE: t = states; break;
    case VMSEAL_KMIP_TAG_RESULT_STATUS: t = result_status; break;
    case VMSEAL_KMIP_TAG_RESULT_REASON: t = result_reasons; break;
    case VMSEAL_KMIP_TAG_KEY_FORMAT_TYPE: t = key_formats; break;
    case VMSEAL_KMIP_TAG_NAME_TYPE: t = name_types; break;
    case VMSEAL_KMIP_TAG_QUERY_FUNCTION: t = query_functions; break;
    case VMSEAL_KMIP_TAG_REVOCATION_REASON_CODE: t = revocation_reasons; break;
    case VMSEAL_KMIP_TAG_CREDENTIAL_TYPE: t = credential_types; break;
    case VMSEAL_KMIP_TAG_BATCH_ERROR_CONTINUATION_OPTION: t = batch_error_options; break;
    case VMSEAL_KMIP_TAG_LINK_TYPE: t = link_types; break;
    default: return NULL;
    }
    for (; t->name; t++)
        if (t->value == value)
            return t->name;
    return NULL;
}

/* ---- standard attributes (KMIP 1.4 §3) ----------------------------------- */

#define S VMSEAL_TTLV_STRUCTURE
#define I VMSEAL_TTLV_INTEGER
#define E VMSEAL_TTLV_ENUM
#define B VMSEAL_TTLV_BOOL
#define T VMSEAL_TTLV_TEXT
#define D VMSEAL_TTLV_DATETIME
#define V VMSEAL_TTLV_INTERVAL
static const vmseal_kmip_attr_info attrs[] = {
    {"Unique Identifier", VMSEAL_KMIP_TAG_UNIQUE_IDENTIFIER, T, false},
    {"Name", VMSEAL_KMIP_TAG_NAME, S, true},
    {"Object Type", VMSEAL_KMIP_TAG_OBJECT_TYPE, E, false},
    {"Cryptographic Algorithm", VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, E, false},
    {"Cryptographic Length", VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_LENGTH, I, false},
    {"Cryptographic Parameters", VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS, S, true},
    {"Cryptographic Domain Parameters", VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_DOMAIN_PARAMETERS, S, false},
    {"Certificate Type", VMSEAL_KMIP_TAG_CERTIFICATE_TYPE, E, false},
    {"Certificate Length", VMSEAL_KMIP_TAG_CERTIFICATE_LENGTH, I, false},
    {"X.509 Certificate Identifier", VMSEAL_KMIP_TAG_X_509_CERTIFICATE_IDENTIFIER, S, false},
    {"X.509 Certificate Subject", VMSEAL_KMIP_TAG_X_509_CERTIFICATE_SUBJECT, S, false},
    {"X.509 Certificate Issuer", VMSEAL_KMIP_TAG_X_509_CERTIFICATE_ISSUER, S, false},
    {"Certificate Identifier", VMSEAL_KMIP_TAG_CERTIFICATE_IDENTIFIER, S, false},
    {"Certificate Subject", VMSEAL_KMIP_TAG_CERTIFICATE_SUBJECT, S, false},
    {"Certificate Issuer", VMSEAL_KMIP_TAG_CERTIFICATE_ISSUER, S, false},
    {"Digital Signature Algorithm", VMSEAL_KMIP_TAG_DIGITAL_SIGNATURE_ALGORITHM, E, true},
    {"Digest", VMSEAL_KMIP_TAG_DIGEST, S, true},
    {"Operation Policy Name", VMSEAL_KMIP_TAG_OPERATION_POLICY_NAME, T, false},
    {"Cryptographic Usage Mask", VMSEAL_KMIP_TAG_CRYPTOGRAPHIC_USAGE_MASK, I, false},
    {"Lease Time", VMSEAL_KMIP_TAG_LEASE_TIME, V, false},
    {"Usage Limits", VMSEAL_KMIP_TAG_USAGE_LIMITS, S, false},
    {"State", VMSEAL_KMIP_TAG_STATE, E, false},
    {"Initial Date", VMSEAL_KMIP_TAG_INITIAL_DATE, D, false},
    {"Activation Date", VMSEAL_KMIP_TAG_ACTIVATION_DATE, D, false},
    {"Process Start Date", VMSEAL_KMIP_TAG_PROCESS_START_DATE, D, false},
    {"Protect Stop Date", VMSEAL_KMIP_TAG_PROTECT_STOP_DATE, D, false},
    {"Deactivation Date", VMSEAL_KMIP_TAG_DEACTIVATION_DATE, D, false},
    {"Destroy Date", VMSEAL_KMIP_TAG_DESTROY_DATE, D, false},
    {"Compromise Occurrence Date", VMSEAL_KMIP_TAG_COMPROMISE_OCCURRENCE_DATE, D, false},
    {"Compromise Date", VMSEAL_KMIP_TAG_COMPROMISE_DATE, D, false},
    {"Revocation Reason", VMSEAL_KMIP_TAG_REVOCATION_REASON, S, false},
    {"Archive Date", VMSEAL_KMIP_TAG_ARCHIVE_DATE, D, false},
    {"Object Group", VMSEAL_KMIP_TAG_OBJECT_GROUP, T, true},
    {"Fresh", VMSEAL_KMIP_TAG_FRESH, B, false},
    {"Link", VMSEAL_KMIP_TAG_LINK, S, true},
    {"Application Specific Information", VMSEAL_KMIP_TAG_APPLICATION_SPECIFIC_INFORMATION, S, true},
    {"Contact Information", VMSEAL_KMIP_TAG_CONTACT_INFORMATION, T, false},
    {"Last Change Date", VMSEAL_KMIP_TAG_LAST_CHANGE_DATE, D, false},
    {"Alternative Name", VMSEAL_KMIP_TAG_ALTERNATIVE_NAME, S, true},
    {"Key Value Present", VMSEAL_KMIP_TAG_KEY_VALUE_PRESENT, B, false},
    {"Key Value Location", VMSEAL_KMIP_TAG_KEY_VALUE_LOCATION, S, true},
    {"Original Creation Date", VMSEAL_KMIP_TAG_ORIGINAL_CREATION_DATE, D, false},
    {"Random Number Generator", VMSEAL_KMIP_TAG_RANDOM_NUMBER_GENERATOR, S, false},
    {"PKCS#12 Friendly Name", VMSEAL_KMIP_TAG_PKCS_12_FRIENDLY_NAME, T, false},
    {"Description", VMSEAL_KMIP_TAG_DESCRIPTION, T, false},
    {"Comment", VMSEAL_KMIP_TAG_COMMENT, T, false},
    {"Sensitive", VMSEAL_KMIP_TAG_SENSITIVE, B, false},
    {"Always Sensitive", VMSEAL_KMIP_TAG_ALWAYS_SENSITIVE, B, false},
    {"Extractable", VMSEAL_KMIP_TAG_EXTRACTABLE, B, false},
    {"Never Extractable", VMSEAL_KMIP_TAG_NEVER_EXTRACTABLE, B, false},
};
#undef S
#undef I
#undef E
#undef B
#undef T
#undef D
#undef V

const vmseal_kmip_attr_info *vmseal_kmip_attr_lookup(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
        if (strcmp(attrs[i].name, name) == 0)
            return &attrs[i];
    return NULL;
}
