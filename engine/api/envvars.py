"""Names of the environment variables credentials are read from.

A leaf module: the command line names them in its help without importing the auth stack.
"""

from __future__ import annotations

SDK_AK_ENV = "HUAWEICLOUD_SDK_AK"
SDK_SK_ENV = "HUAWEICLOUD_SDK_SK"
SDK_SECURITY_TOKEN_ENV = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
SDK_PROJECT_ID_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"
SDK_IAM_ENDPOINT_ENV = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
TOKEN_ENV = "DRS_AUTH_TOKEN"
IAM_USER_ENV = "DRS_IAM_USER"
IAM_PASSWORD_ENV = "DRS_IAM_PASSWORD"
IAM_DOMAIN_ENV = "DRS_IAM_DOMAIN"
IAM_ENDPOINT_ENV = "DRS_IAM_ENDPOINT"
