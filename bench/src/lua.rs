//! The same job written for Envoy's built-in Lua filter: what an Envoy user would write
//! instead of our Wasm filter, to compare against.
//!
//! It follows the filter's default configuration: the override header, then a live pin from
//! the cookie (kept except on top-level navigations), else the weighted hash of the id cookie
//! or of a freshly minted id, the version stamped on the request header and cookies set on
//! the response. Lua has no xxHash, so it hashes with 32-bit FNV-1a (LuaJIT's `bit` library):
//! a cheaper hash than xxh64 for short keys, which only favours Lua. Its random ids come from
//! `math.random`, not from the host's entropy as the filter's do.

use serde_json::{json, Value};
use sticky_canary_filter::bucket::BUCKETS;
use sticky_canary_filter::Config;

/// The `http_filters` entry running the Lua version of `config`.
pub fn filter(config: &Config) -> Value {
    json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": { "inline_string": script(config) },
        },
    })
}

/// The bucket ranges as `(end, version)`, taken from the filter's own layout so both
/// implementations split the buckets identically.
fn ranges(config: &Config) -> Vec<(u16, &str)> {
    let mut ranges: Vec<(u16, &str)> = Vec::new();
    for bucket in 0..BUCKETS {
        let name = config.names[config.buckets.version_of(bucket)].as_str();
        match ranges.last_mut() {
            Some((end, last)) if *last == name => *end = bucket + 1,
            _ => ranges.push((bucket + 1, name)),
        }
    }
    ranges
}

/// A Lua string literal (names are header-safe, so only quotes and backslashes need care).
fn quote(text: &str) -> String {
    format!("{text:?}")
}

/// A Lua pattern matching `text` literally.
fn pattern(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            (!c.is_ascii_alphanumeric())
                .then_some('%')
                .into_iter()
                .chain([c])
        })
        .collect()
}

fn script(config: &Config) -> String {
    let set = |names: &mut dyn Iterator<Item = &String>| {
        names
            .map(|n| format!("[{}] = true", quote(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let known = set(&mut config.names.iter());
    let live = set(&mut config
        .names
        .iter()
        .enumerate()
        .filter(|&(i, _)| config.is_live(i))
        .map(|(_, n)| n));
    let ranges = ranges(config)
        .iter()
        .map(|(end, name)| format!("{{{end}, {}}}", quote(name)))
        .collect::<Vec<_>>()
        .join(", ");
    let cookie = &config.plugin.cookie;
    // Everything after `name=value`, exactly as the filter writes it.
    let attributes = &config.set_cookie("n", "")[2..];
    format!(
        r#"local bit = require("bit")
local KNOWN = {{ {known} }}
local LIVE = {{ {live} }}
local RANGES = {{ {ranges} }}
local SALT = {salt}
local HEADER = {header}
local OVERRIDE = {override_header}
local VERSION_COOKIE, VERSION_PATTERN = {version_cookie}, ";%s*{version_pattern}=([^;%s]+)"
local ID_COOKIE, ID_PATTERN = {id_cookie}, ";%s*{id_pattern}=([%w%-_.]+)"
local ATTRIBUTES = {attributes}

local function bucket(key)
  local h = 2166136261
  for i = 1, #key do
    h = bit.bxor(h, string.byte(key, i))
    -- h * 16777619 mod 2^32 without leaving the exact range of doubles: 16777619 = 2^24 + 403.
    h = bit.tobit(h * 403 + bit.lshift(h, 24))
  end
  return h % {buckets}
end

local function version_of(b)
  for _, range in ipairs(RANGES) do
    if b < range[1] then return range[2] end
  end
  return RANGES[#RANGES][2]
end

local function navigation(headers)
  local dest = headers:get("sec-fetch-dest")
  if dest ~= nil then return string.lower(dest) == "document" end
  local mode = headers:get("sec-fetch-mode")
  return mode ~= nil and string.lower(mode) == "navigate"
end

local function mint()
  return string.format("%08x%08x%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
    math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local version = headers:get(OVERRIDE)
  if version == nil or not KNOWN[version] then
    local cookies = ";" .. (headers:get("cookie") or "")
    local pinned = string.match(cookies, VERSION_PATTERN)
    if pinned ~= nil and LIVE[pinned] and not navigation(headers) then
      version = pinned
    else
      local metadata = handle:streamInfo():dynamicMetadata()
      local id = string.match(cookies, ID_PATTERN)
      if id == nil then
        id = mint()
        metadata:set("sticky", "id", ID_COOKIE .. "=" .. id .. ATTRIBUTES)
      end
      version = version_of(bucket(SALT .. id))
      if version ~= pinned then
        metadata:set("sticky", "version", VERSION_COOKIE .. "=" .. version .. ATTRIBUTES)
      end
    end
  end
  headers:replace(HEADER, version)
end

function envoy_on_response(handle)
  local cookies = handle:streamInfo():dynamicMetadata():get("sticky")
  if cookies ~= nil then
    if cookies.version ~= nil then handle:headers():add("set-cookie", cookies.version) end
    if cookies.id ~= nil then handle:headers():add("set-cookie", cookies.id) end
  end
end
"#,
        salt = quote(&config.plugin.salt),
        header = quote(&config.header),
        override_header = quote(&config.override_header),
        version_cookie = quote(&cookie.name),
        version_pattern = pattern(&cookie.name),
        id_cookie = quote(&cookie.id_name),
        id_pattern = pattern(&cookie.id_name),
        attributes = quote(attributes),
        buckets = BUCKETS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_the_filter_layout() {
        let config = Config::from_json(
            br#"{"versions":[{"name":"v1","weight":90},{"name":"v2","weight":10}]}"#,
        )
        .unwrap();
        assert_eq!(ranges(&config), [(1000, "v2"), (10_000, "v1")]);
    }

    #[test]
    fn patterns_escape_punctuation() {
        assert_eq!(pattern("sticky-version"), "sticky%-version");
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }
}
