// SO_ORIGINAL_DST for Weft's proxy: given the file descriptor of an accepted TCP socket that
// iptables REDIRECTed, returns the destination the client originally asked for.
// originalDst(fd) -> { address: string, port: number, family: 4 | 6 }; throws with code
// ENOENT when the socket was not redirected, and the errno name otherwise.
// mallocTrim() -> boolean: glibc's malloc_trim(0), which gives the free pages inside every malloc
// arena back to the kernel (not only the top of the main heap); false where there is no glibc.
#include <arpa/inet.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  const char *code = err == ENOENT ? "ENOENT" : err == EBADF ? "EBADF" : err == ENOPROTOOPT ? "ENOPROTOOPT" : err == ENOTSOCK ? "ENOTSOCK" : "EIO";
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, "EINVAL", "originalDst(fd) needs a file descriptor");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "originalDst(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct sockaddr_storage local;
  socklen_t llen = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &llen) != 0) return throw_errno(env, errno, "getsockname");

  char text[INET6_ADDRSTRLEN];
  int port, family;
  if (local.ss_family == AF_INET6) {
    struct sockaddr_in6 dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) {
      // An IPv4 connection on a dual-stack socket: ask the IPv4 table.
      struct sockaddr_in dst4;
      socklen_t len4 = sizeof dst4;
      if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst4, &len4) != 0) return throw_errno(env, errno, "SO_ORIGINAL_DST");
      inet_ntop(AF_INET, &dst4.sin_addr, text, sizeof text);
      port = ntohs(dst4.sin_port);
      family = 4;
    } else {
      inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof text);
      port = ntohs(dst.sin6_port);
      family = 6;
    }
  } else {
    struct sockaddr_in dst;
    socklen_t len = sizeof dst;
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) return throw_errno(env, errno, "SO_ORIGINAL_DST");
    inet_ntop(AF_INET, &dst.sin_addr, text, sizeof text);
    port = ntohs(dst.sin_port);
    family = 4;
  }
  napi_value result, v;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, result, "port", v);
  napi_create_int32(env, family, &v);
  napi_set_named_property(env, result, "family", v);
  return result;
}

static napi_value malloc_trim_now(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#ifdef __GLIBC__
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
#else
  napi_get_boolean(env, false, &result);
#endif
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_now, NULL, &fn);
  napi_set_named_property(env, exports, "mallocTrim", fn);
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  return exports;
}
