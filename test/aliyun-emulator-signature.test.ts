/**
 * The emulator's signature code against requests captured from the real SDK (both algorithms), and the parts of
 * decoding that canonicalisation depends on.
 */
import { describe, expect, it } from 'vitest';
import {
  acs3CanonicalRequest, acs3Signature, acs3StringToSign, decodePairs, parseAcs3Authorization, percentEncode, rpcSignature,
  rpcStringToSign, sha256Hex,
} from '../providers/aliyun/emulator/signature.js';

const SECRET = 'testsecret';
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

// RunInstances as the SDK sent it (query in insertion order, Node's querystring encoding).
const WIRE_QUERY =
  'RegionId=cn-hangzhou&ImageId=ubuntu_22_04_x64_20G_alibase_20240101.vhd&InstanceType=ecs.g7.large&Amount=2' +
  '&Password=Pa%20ss*(word)!&ClientToken=tok-1&DryRun=false&SystemDisk.Category=cloud_essd&SystemDisk.Size=40' +
  '&DataDisk.1.Category=cloud_essd&DataDisk.1.Size=100&Tag.1.Key=owner&Tag.1.Value=engine%20x';

const ACS3_CANONICAL = [
  'POST',
  '/',
  'Amount=2&ClientToken=tok-1&DataDisk.1.Category=cloud_essd&DataDisk.1.Size=100&DryRun=false&ImageId=ubuntu_22_04_x64_20G_alibase_20240101.vhd&InstanceType=ecs.g7.large&Password=Pa%20ss%2A%28word%29%21&RegionId=cn-hangzhou&SystemDisk.Category=cloud_essd&SystemDisk.Size=40&Tag.1.Key=owner&Tag.1.Value=engine%20x',
  'host:127.0.0.1:18080',
  'x-acs-action:RunInstances',
  `x-acs-content-sha256:${EMPTY_SHA256}`,
  'x-acs-credentials-provider:static_ak',
  'x-acs-date:2026-11-22T15:37:36Z',
  'x-acs-signature-nonce:36c53920d4cfd21bcc337b62c17de312',
  'x-acs-version:2014-05-26',
  '',
  'host;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version',
  EMPTY_SHA256,
].join('\n');

describe('ACS3-HMAC-SHA256', () => {
  const headers = {
    host: '127.0.0.1:18080',
    'x-acs-action': 'RunInstances',
    'x-acs-version': '2014-05-26',
    'x-acs-date': '2026-11-22T15:37:36Z',
    'x-acs-signature-nonce': '36c53920d4cfd21bcc337b62c17de312',
    'x-acs-content-sha256': EMPTY_SHA256,
    'x-acs-credentials-provider': 'static_ak',
    accept: 'application/json',
    'user-agent': 'AlibabaCloud (linux; x64) Node.js/v20 Core/1.0.1 TeaDSL/1',
  };
  const auth =
    'ACS3-HMAC-SHA256 Credential=AKIDTEST,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=ef37c17d43a068207e457acc5573b019fb8db2abb0197705cbc05b74fd72dc02';

  it('rebuilds the captured canonical request, its hash and its signature', () => {
    const parsed = parseAcs3Authorization(auth)!;
    expect(parsed.accessKeyId).toBe('AKIDTEST');
    expect(parsed.algorithm).toBe('ACS3-HMAC-SHA256');
    const canonical = acs3CanonicalRequest({
      method: 'POST',
      path: '/',
      query: decodePairs(WIRE_QUERY),
      headers,
      signedHeaders: parsed.signedHeaders,
      payloadHash: EMPTY_SHA256,
    });
    expect(canonical).toBe(ACS3_CANONICAL);
    expect(sha256Hex(canonical)).toBe('addb679ff58422ff4b4c0ad9080109e15b0d70fa324185a55d3f69affe05bc16');
    expect(acs3Signature(SECRET, acs3StringToSign(canonical))).toBe(parsed.signature);
  });

  it('gives another signature for another secret or a changed parameter', () => {
    const parsed = parseAcs3Authorization(auth)!;
    const canonical = (query: string) =>
      acs3CanonicalRequest({ method: 'POST', path: '/', query: decodePairs(query), headers, signedHeaders: parsed.signedHeaders, payloadHash: EMPTY_SHA256 });
    expect(acs3Signature('other', acs3StringToSign(canonical(WIRE_QUERY)))).not.toBe(parsed.signature);
    expect(acs3Signature(SECRET, acs3StringToSign(canonical(WIRE_QUERY.replace('Amount=2', 'Amount=3'))))).not.toBe(parsed.signature);
  });

  it('refuses authorization headers of another shape', () => {
    expect(parseAcs3Authorization('Bearer abc')).toBeUndefined();
    expect(parseAcs3Authorization('ACS3-HMAC-SHA256 Credential=AK,Signature=x')).toBeUndefined();
  });
});

describe('legacy HMAC-SHA1 query signature', () => {
  it('rebuilds the captured string to sign and signature', () => {
    const params: [string, string][] = [
      ['Action', 'RunInstances'], ['Format', 'json'], ['Version', '2014-05-26'], ['Timestamp', '2026-11-22T15:37:39Z'],
      ['SignatureNonce', '844cc48c40b0ec8f6de9a0e3fdeadd1a'], ['SignatureMethod', 'HMAC-SHA1'], ['SignatureVersion', '1.0'],
      ['AccessKeyId', 'AKIDTEST'], ...decodePairs(WIRE_QUERY), ['Signature', 'ignored'],
    ];
    const sts = rpcStringToSign('POST', params);
    expect(sts).toBe(
      'POST&%2F&AccessKeyId%3DAKIDTEST%26Action%3DRunInstances%26Amount%3D2%26ClientToken%3Dtok-1%26DataDisk.1.Category%3Dcloud_essd%26DataDisk.1.Size%3D100%26DryRun%3Dfalse%26Format%3Djson%26ImageId%3Dubuntu_22_04_x64_20G_alibase_20240101.vhd%26InstanceType%3Decs.g7.large%26Password%3DPa%2520ss%252A%2528word%2529%2521%26RegionId%3Dcn-hangzhou%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D844cc48c40b0ec8f6de9a0e3fdeadd1a%26SignatureVersion%3D1.0%26SystemDisk.Category%3Dcloud_essd%26SystemDisk.Size%3D40%26Tag.1.Key%3Downer%26Tag.1.Value%3Dengine%2520x%26Timestamp%3D2026-11-22T15%253A37%253A39Z%26Version%3D2014-05-26',
    );
    expect(rpcSignature(SECRET, sts)).toBe('2w4iUatONdqMvER98vbK4UWhdd4=');
    expect(rpcSignature('other', sts)).not.toBe('2w4iUatONdqMvER98vbK4UWhdd4=');
  });
});

describe('encoding', () => {
  it('percent-encodes as RFC 3986 and decodes what the SDK sends', () => {
    expect(percentEncode("a b*c(d)e!f'g~h-i_j.k/l")).toBe('a%20b%2Ac%28d%29e%21f%27g~h-i_j.k%2Fl');
    expect(decodePairs('InstanceIds=%5B%22i-a%22%2C%22i-b%22%5D&Empty=&Flag')).toEqual([
      ['InstanceIds', '["i-a","i-b"]'], ['Empty', ''], ['Flag', ''],
    ]);
    expect(decodePairs('a=1%2B1+2&b=%zz')).toEqual([['a', '1+1 2'], ['b', '%zz']]);
  });
});
