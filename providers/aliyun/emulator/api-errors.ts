/**
 * The error answers of the emulated APIs, one place for codes, HTTP statuses and messages. Codes, statuses and
 * messages follow the ECS and VPC API references' error tables where they list them; choices made without such an
 * entry are marked [unverified].
 */
import { ApiError } from './wire.js';

const e = (status: number, code: string, message: string, headers?: Record<string, string>) => new ApiError(status, code, message, headers);

export const errors = {
  // --- Gateway: signature, version, action -------------------------------------------------------------------
  signatureMismatch: (stringToSign: string) =>
    e(400, 'SignatureDoesNotMatch', `Specified signature is not matched with our calculation. server string to sign is:${stringToSign}`),
  incompleteSignature: (why: string) => e(400, 'IncompleteSignature', `The request signature does not conform to Aliyun standards. ${why}`),
  accessKeyNotFound: () => e(404, 'InvalidAccessKeyId.NotFound', 'Specified access key is not found.'),
  // [unverified] the gateway's answers for a request without any signature, or without AccessKeyId.
  missingSignature: () => e(400, 'MissingSignature', 'Signature is mandatory for this action.'),
  missingAccessKeyId: () => e(400, 'MissingAccessKeyId', 'AccessKeyId is mandatory for this action.'),
  badSignatureMethod: () => e(400, 'InvalidSignatureMethod', 'Specified signature method is not valid.'),
  badSignatureVersion: () => e(400, 'InvalidSignatureVersion', 'Specified signature version is not valid.'),
  timestampExpired: () => e(400, 'InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.'),
  timestampMalformed: () => e(400, 'InvalidTimeStamp.Format', 'Specified time stamp or date value is not well formatted.'),
  nonceUsed: () => e(400, 'SignatureNonceUsed', 'Specified signature nonce was used already.'),
  missingNonce: () => e(400, 'MissingSignatureNonce', 'SignatureNonce is mandatory for this action.'),
  missingAction: () => e(400, 'MissingAction', 'Action is mandatory for this request.'),
  missingVersion: () => e(400, 'MissingVersion', 'Version is mandatory for this action.'),
  badVersion: () => e(400, 'InvalidVersion', 'Specified parameter Version is not valid.'),
  unknownAction: () => e(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.'),
  bodyTooLarge: () => e(413, 'RequestEntityTooLarge', 'The request body is too large.'),

  // --- Faults ---------------------------------------------------------------------------------------------
  throttling: (headers?: Record<string, string>) => e(400, 'Throttling.User', 'Request was denied due to user flow control.', headers),
  serviceUnavailable: (headers?: Record<string, string>) =>
    e(503, 'ServiceUnavailable', 'The request has failed due to a temporary failure of the server.', headers),
  internalError: () => e(500, 'InternalError', 'The request processing has failed due to some unknown error, exception or failure.'),

  // --- Parameters -----------------------------------------------------------------------------------------
  missing: (name: string) => e(400, 'MissingParameter', `The input parameter "${name}" that is mandatory for processing this request is not supplied.`),
  // [unverified] the gateway answers a missing RegionId with its own code rather than MissingParameter.
  missingRegion: () => e(400, 'MissingRegionId', 'RegionId is mandatory for this action.'),
  invalid: (name: string, code = 'InvalidParameter') => e(400, code, `The specified parameter "${name}" is not valid.`),
  malformed: (name: string) => e(400, `Invalid${name.replace(/\W/g, '')}.Malformed`, `The specified parameter "${name}" is not valid.`),
  unsupported: (name: string) =>
    e(400, 'InvalidParameter.NotSupported', `The parameter "${name}" is not supported by this emulator of the API.`),
  regionNotFound: () => e(404, 'InvalidRegionId.NotFound', 'The specified RegionId does not exist.'),
  zoneNotFound: () => e(404, 'InvalidZoneId.NotFound', 'The specified ZoneId does not exist.'),
  nextToken: () => e(400, 'InvalidNextToken.Malformed', 'The specified parameter "NextToken" is not valid.'),

  // --- Idempotency and dry runs ---------------------------------------------------------------------------
  idempotentMismatch: () =>
    e(400, 'IdempotentParameterMismatch', 'The specified parameters are different from before with the same ClientToken.'),
  // [unverified] status of a passed dry run: the APIs answer it as an error, 400 is the most plausible status.
  dryRun: () => e(400, 'DryRunOperation', 'Request validation has been passed with DryRun flag set.'),
  dryRunDeleteInstances: () => e(400, 'DRYRUN.SUCCESS', 'This request is a dryrun request with successful result.'),

  // --- Tags -----------------------------------------------------------------------------------------------
  tagKey: () => e(400, 'InvalidTagKey.Malformed', 'The specified Tag.n.Key is not valid.'),
  tagValue: () => e(400, 'InvalidTagValue.Malformed', 'The specified Tag.n.Value is not valid.'),
  duplicateTagKey: () => e(400, 'Duplicate.TagKey', 'The Tag.N.Key contain duplicate key.'),
  tagCount: () => e(400, 'InvalidTagCount', 'The specified tags are beyond the permitted range.'),
  resourceType: () => e(400, 'InvalidResourceType.NotSupported', 'The specified ResourceType is not supported.'),
  resourceNotFound: () => e(404, 'InvalidResourceId.NotFound', 'The specified ResourceIds are not found in our records.'),

  // --- Instances ------------------------------------------------------------------------------------------
  instanceNotFound: () => e(404, 'InvalidInstanceId.NotFound', 'The specified InstanceId does not exist.'),
  instanceStatus: () => e(403, 'IncorrectInstanceStatus', 'The current status of the resource does not support this operation.'),
  instanceInitializing: () => e(403, 'IncorrectInstanceStatus.Initializing', 'The specified instance status does not support this operation.'),
  deletionProtection: () => e(403, 'InvalidOperation.DeletionProtection', 'The instance is protected from release; disable its deletion protection first.'),
  imageNotFound: () => e(404, 'InvalidImageId.NotFound', 'The specified ImageId does not exist.'),
  instanceType: () => e(400, 'InvalidInstanceType.ValueNotSupported', 'The specified InstanceType beyond the permitted range.'),
  amount: () => e(400, 'InvalidParameter', 'The specified parameter Amount is not valid.'),
  bandwidth: () => e(400, 'InvalidParameter', 'The specified parameter InternetMaxBandwidthOut is not valid.'),
  password: () => e(400, 'InvalidPassword.Malformed', 'The specified parameter Password is not valid.'),
  passwordInherit: () => e(400, 'InvalidPasswordParam.Mismatch', 'The input password should be null when passwdInherit is true.'),
  hostName: () => e(400, 'InvalidHostName.Malformed', 'The specified parameter HostName is not valid.'),
  instanceName: () => e(400, 'InvalidInstanceName.Malformed', 'The specified parameter InstanceName is not valid.'),
  description: () => e(400, 'InvalidDescription.Malformed', 'The specified parameter Description is not valid.'),
  systemDiskCategory: () => e(400, 'InvalidSystemDiskCategory.ValueNotSupported', 'The specified parameter SystemDisk.Category is not valid.'),
  systemDiskSize: () => e(404, 'InvalidSystemDiskSize', 'The specified parameter SystemDisk.Size is invalid.'),
  dataDiskCategory: () => e(400, 'InvalidDiskCategory.ValueNotSupported', 'The specified parameter DiskCategory is not valid.'),
  dataDiskSize: () =>
    e(400, 'InvalidDataDiskSize.ValueNotSupported', 'The specified DataDisk.n.Size beyond the permitted range, or the capacity of snapshot exceeds the size limit of the specified disk category.'),
  dataDiskCount: () => e(400, 'InstanceDiskNumber.LimitExceed', 'The total number of specified disk in an instance exceeds.'),
  internetChargeType: () => e(400, 'InvalidInternetChargeType.ValueNotSupported', 'The specified InternetChargeType is not valid.'),
  instanceChargeType: () => e(404, 'InvalidInstanceChargeType.NotFound', 'The InstanceChargeType does not exist in our records.'),
  userDataSize: () => e(400, 'InvalidUserData.SizeExceeded', 'The specified parameter UserData exceeds the size.'),
  noStock: () =>
    e(403, 'OperationDenied.NoStock', 'Sales of this resource are temporarily suspended in the specified region; please try again later.'),
  instanceQuota: () => e(400, 'QuotaExceed.AfterpayInstance', 'The maximum number of Pay-As-You-Go instances is exceeded.'),
  vSwitchZoneMismatch: () => e(400, 'InvalidParameter.Mismatch', 'Specified virtual switch is not in the specified zone.'),
  securityGroupVpcMismatch: () => e(400, 'InvalidParameter.Mismatch', 'Specified security group and virtual switch are not in the same VPC.'),
  securityGroupConflict: () => e(400, 'InvalidParameter.Conflict', 'SecurityGroupId and SecurityGroupIds cannot be specified at the same time.'),
  vSwitchIpNotEnough: () => e(403, 'InvalidVSwitchId.IpNotEnough', 'The specified VSwitch does not have enough IP addresses.'),
  keyPairNotFound: () => e(404, 'InvalidKeyPairName.NotFound', 'The specified KeyPairName does not exist in our records.'),

  // --- Security groups ------------------------------------------------------------------------------------
  securityGroupNotFound: () => e(404, 'InvalidSecurityGroupId.NotFound', 'The specified SecurityGroupId does not exist.'),
  securityGroupInUse: () => e(403, 'DependencyViolation', 'There is still instance(s) in the specified security group.'),
  securityGroupReferenced: () => e(403, 'DependencyViolation', 'The specified security group has been authorized in another one.'),
  securityGroupName: () => e(400, 'InvalidSecurityGroupName.Malformed', 'The specified parameter SecurityGroupName is not valid.'),
  securityGroupType: () => e(400, 'InvalidSecurityGroupType.Malformed', 'The specified parameter SecurityGroupType is not valid.'),
  ecsVpcNotFound: () => e(404, 'InvalidVpcId.NotFound', 'The specified VpcId does not exist.'),
  ecsVpcStatus: () => e(403, 'IncorrectVpcStatus', 'The current status of vpc does not support this operation.'),
  ipProtocol: () => e(400, 'InvalidIpProtocol.Malformed', 'The specified parameter "IpProtocol" is not valid.'),
  portRange: () => e(400, 'InvalidPortRange.Malformed', 'The specified parameter "PortRange" is not valid.'),
  sourceCidr: () => e(400, 'InvalidSourceCidrIp.Malformed', 'The specified parameter "SourceCidrIp" is not valid.'),
  policy: () => e(400, 'InvalidPolicy.Malformed', 'The specified parameter "Policy" is not valid.'),
  priority: () => e(400, 'InvalidPriority.Malformed', 'The specified parameter "Priority" is not valid.'),
  nicType: () => e(400, 'InvalidNicType.ValueNotSupported', 'The specified NicType does not exist.'),
  ruleSourceMissing: () => e(403, 'MissingParameter', 'The input parameter "SourceGroupId" or "SourceCidrIp" cannot be both blank.'),
  sourceGroupNotFound: () => e(404, 'InvalidSourceGroupId.NotFound', 'The SourceGroupId provided does not exist in our records.'),
  sourceGroupMismatch: () => e(400, 'InvalidSourceGroupId.Mismatch', 'Specified security group and source group are not in the same VPC.'),
  ruleLimit: () => e(403, 'AuthorizationLimitExceed', 'The maximum number of authorization rules in the security group is exceeded.'),
  ruleIdNotFound: () => e(404, 'InvalidSecurityGroupRuleId.NotFound', 'The specified SecurityGroupRuleId does not exist.'),

  // --- Key pairs ------------------------------------------------------------------------------------------
  keyPairName: () => e(400, 'InvalidKeyPairName.Malformed', 'Specified Key Pair name is not valid.'),
  keyPairExists: () => e(400, 'KeyPair.AlreadyExist', 'The key pair already exist.'),
  keyPairQuota: () => e(403, 'QuotaExceed.KeyPair', 'The key pair quota exceeds.'),
  publicKey: () => e(400, 'InvalidPublicKeyBody.Malformed', 'The PublicKeyBody format is not supported.'),

  // --- VPC API --------------------------------------------------------------------------------------------
  vpcMissing: () => e(400, 'MissingParameter', 'Miss mandatory parameter.'),
  vpcNotFound: () => e(404, 'InvalidVpcId.NotFound', 'Specified VPC does not exist.'),
  vpcStatus: () => e(400, 'IncorrectVpcStatus', 'Current VPC status does not support this operation.'),
  vpcHasVSwitches: () => e(400, 'DependencyViolation.VSwitch', 'Specified object has dependent resources.'),
  vpcHasSecurityGroups: () => e(400, 'DependencyViolation.SecurityGroup', 'Specified object has dependent resources SecurityGroup.'),
  vpcName: () => e(400, 'InvalidVpcName.Malformed', 'Specified VPC name is not valid.'),
  // The API spells it so.
  vpcDescription: () => e(400, 'InvalidVpcDiscription.Malformed', 'Specified VPC description is not valid.'),
  cidrMalformed: () => e(400, 'InvalidCidrBlock.Malformed', 'Specified CIDR block is not valid.'),
  // The API spells it so.
  cidrMask: () => e(400, 'InvalidCirdrBlock.MaskLength', 'Specified CIDR block is not valid .'),
  cidrNotInVpc: () => e(400, 'InvalidParameter', 'Specified CIDR block is not valid in VPC.'),
  cidrOverlap: () => e(400, 'InvalidCidrBlock.Overlapped', 'Specified CIDR block overlapped with other subnets.'),
  vSwitchQuota: () => e(400, 'QuotaExceeded.VSwitch', 'Virtual switch quota exceeded.'),
  vSwitchConcurrent: () => e(400, 'IncorrectVSwitchStatus', 'VSwitch Creation simultaneously is not supported.'),
  vSwitchName: () => e(400, 'InvalidVSwitchName.Malformed', 'Specified virtual switch name is not valid.'),
  vSwitchDescription: () => e(400, 'InvalidVSwitchDiscription.Malformed', 'Specified virtual switch description is not valid.'),
  vpcZoneNotFound: () => e(404, 'InvalidZoneId.NotFound', 'Specified zone does not exist.'),
  vSwitchNotFound: () => e(404, 'InvalidVSwitchId.NotFound', 'Specified virtual switch does not exist.'),
  ecsVSwitchNotFound: () => e(404, 'InvalidVSwitchId.NotFound', 'The VSwitchId provided does not exist in our records.'),
  vSwitchStatus: () => e(400, 'IncorrectVSwitchStatus', 'The current status of virtual switch does not support this operation.'),
  vSwitchInUse: () => e(400, 'DependencyViolation', 'Specified object has dependent resources.'),
};
