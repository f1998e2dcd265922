// Serialization of HTTP/1.x heads and the standard reason phrases. See http1.h.

#include "core/proto/http1.h"

namespace crescent::core::http1 {

namespace {

// Bytes taken by the fields and the final CRLF.
size_t fieldsSize(const HttpHead& h) {
  size_t n = 2;
  for (const HeaderField& f : h.headers) n += f.name.size() + f.value.size() + 4;
  return n;
}

void appendFields(const HttpHead& h, std::string& out) {
  for (const HeaderField& f : h.headers) {
    out.append(f.name);
    out.append(": ", 2);
    out.append(f.value);
    out.append("\r\n", 2);
  }
  out.append("\r\n", 2);
}

std::string_view versionString(const HttpHead& h) {
  return h.version_minor == 1 ? "HTTP/1.1" : "HTTP/1.0";
}

}  // namespace

void serializeRequestHead(const HttpHead& req, std::string& out) {
  out.reserve(out.size() + req.method.size() + req.target.size() + 12 + fieldsSize(req));
  out.append(req.method);
  out.push_back(' ');
  out.append(req.target);
  out.push_back(' ');
  out.append(versionString(req));
  out.append("\r\n", 2);
  appendFields(req, out);
}

void serializeResponseHead(const HttpHead& resp, std::string& out) {
  std::string_view reason = resp.reason.empty() ? reasonPhrase(resp.status) : resp.reason;
  out.reserve(out.size() + reason.size() + 15 + fieldsSize(resp));
  out.append(versionString(resp));
  out.push_back(' ');
  int s = resp.status;
  if (s < 100 || s > 999) s = 500;  // not a status a parser accepts; never send garbage
  char code[3] = {static_cast<char>('0' + s / 100), static_cast<char>('0' + s / 10 % 10),
                  static_cast<char>('0' + s % 10)};
  out.append(code, 3);
  out.push_back(' ');
  out.append(reason);
  out.append("\r\n", 2);
  appendFields(resp, out);
}

std::string_view reasonPhrase(int status) {
  // clang-format off
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 511: return "Network Authentication Required";
    default: return "";
  }
  // clang-format on
}

}  // namespace crescent::core::http1
