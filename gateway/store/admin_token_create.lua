-- Creates a named admin token. Names are unique among active tokens, so an audit record's actor
-- names one live credential.
-- Reply: 1 created, 0 an active token has the name, -1 the id is taken (draw another).
local token_record = KEYS[1]
local token_ids = KEYS[2]    -- set of token ids
local active_names = KEYS[3] -- active name -> token id
local token_id = ARGV[1]
local digest = ARGV[2]
local name = ARGV[3]
local role = ARGV[4]
local prefix = ARGV[5]       -- the token's public prefix
local created_at = ARGV[6]
local created_by = ARGV[7]

if redis.call('HEXISTS', active_names, name) == 1 then return 0 end
if redis.call('EXISTS', token_record) == 1 then return -1 end
redis.call('HSET', token_record, 'hash', digest, 'name', name, 'role', role,
  'prefix', prefix, 'created_at', created_at, 'created_by', created_by)
redis.call('SADD', token_ids, token_id)
redis.call('HSET', active_names, name, token_id)
return 1
