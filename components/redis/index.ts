// Redis domain: pure planners for redis.conf and the ACL file (users.acl).
export * from "./conf.ts";
