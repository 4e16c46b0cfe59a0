"""Negative control for `lab.py check ftp`: the seed's my_ftp server, re-created in Python 3.

    python3 tests/negative/ftp_seed_server.py --port 20060 --root /srv/ftp

Faithful to the seed (§3 "练习：ftp文件上传下载", my_ftp/server/server.py) in everything that
matters. Do not copy any of it into real code:

* users in ``<root>/users`` as ``sha256(user + password + user)``, a fast hash with the user name
  as "salt"; the password itself arrives in clear (raw ``recv(1024)`` prompts, no framing);
  wrong passwords are retried forever, silently;
* ``struct.pack('i', ...)`` (native byte order, signed) for the header length, ``recv(n)``
  assumed to return exactly n bytes;
* ``get``: ``path + os.sep + name`` — ``get ../../etc/passwd`` reads any file;
  ``put``: ``os.sep.join((path, header['filename']))`` — the client picks where to write;
* uploads go to ``<name>_temp`` (two clients uploading one name collide), then
  ``os.remove`` + ``os.rename`` (not atomic), no quota, no resume;
* one ``multiprocessing.Process`` per connection, and the parent never closes its copy of the
  connection (the client never sees EOF when the child ends).

Only the address and the root are parameters (the seed hard-coded 192.168.20.6 and the cwd).
The check must reject this server; it does, because it speaks none of the documented protocol
and because of everything above.
"""
import argparse
import json
import os
import signal
import struct
from hashlib import md5, sha256
from multiprocessing import Process
from socket import AF_INET, SO_REUSEADDR, SOCK_STREAM, SOL_SOCKET, socket

MAX_CONNECTION = 5
MAX_PACKAGE_SIZE = 1024
HEADER_LENGTH = 4
MESSAGE, FILE, OTHER, PUT = "MESSAGE", "FILE", "OTHER", "PUT"
COMMAND_ERROR = "Error: The command is incorrect.".encode("utf-8")
COMMAND_SHOW = "----------------".encode("utf-8")
DEMO = {"alice": "wonderland", "bob": "builder", "alice2": "looking-glass"}
ROOT = "."


def put(connection, cmd, path):
    send_message(connection, cmd[1].encode("utf-8"), PUT)
    header_length = struct.unpack("i", connection.recv(HEADER_LENGTH))[0]
    header = json.loads(connection.recv(header_length).decode("utf-8"))
    _path = os.sep.join((path, header["filename"]))          # the client chooses the path
    total_size = header["total_size"]
    md5_obj = md5()
    recv_size = 0
    with open(_path + "_temp", "wb") as wf:
        while recv_size < total_size:
            recv_data = connection.recv(MAX_PACKAGE_SIZE)
            md5_obj.update(recv_data)
            recv_size += len(recv_data)
            wf.write(recv_data)
    if md5_obj.hexdigest() == header["md5"]:
        if os.path.isfile(_path):
            os.remove(_path)
        os.rename(_path + "_temp", _path)
        send_message(connection, "\nUpload successful!".encode("utf-8"))
    else:
        os.remove(_path + "_temp")
        send_message(connection, "\nUpload failed!".encode("utf-8"))


def get(connection, cmd, path):
    _path = path + os.sep + cmd[1]                            # ../../etc/passwd works
    if os.path.isfile(_path):
        send_file(connection, _path)
    else:
        send_message(connection, COMMAND_ERROR)


def show(connection, cmd, path):
    if cmd[1] == "local":
        send_message(connection, COMMAND_SHOW, OTHER)
    elif cmd[1] == "origin":
        if not os.path.isdir(path):
            os.makedirs(path)
        res = COMMAND_SHOW.decode("utf-8") + "\n" + "\n".join(next(os.walk(path))[2])
        send_message(connection, res.encode("utf-8"))
    else:
        send_message(connection, COMMAND_ERROR)


def make_header(data_type, data_length, data_bytes=None, filename=None, _md5=None):
    if not _md5:
        _md5 = md5(data_bytes).hexdigest()
    header = {"data_type": data_type, "filename": filename, "total_size": data_length, "md5": _md5}
    return json.dumps(header).encode("utf-8")


def send_message(connection, data_bytes, data_type=MESSAGE):
    header_bytes = make_header(data_type, len(data_bytes), data_bytes=data_bytes)
    connection.send(struct.pack("i", len(header_bytes)))       # native, signed: the seed's 'i'
    connection.send(header_bytes)
    connection.send(data_bytes)


def file_md5(filename):
    with open(filename, "rb") as rf:
        return md5(rf.read()).hexdigest()


def send_file(connection, path):
    file_size = os.path.getsize(path)
    header_bytes = make_header(FILE, file_size, filename=os.path.basename(path), _md5=file_md5(path))
    connection.send(struct.pack("i", len(header_bytes)))
    connection.send(header_bytes)
    with open(path, "rb") as rf:
        while True:
            data = rf.read(MAX_PACKAGE_SIZE)
            if not data:
                break
            connection.send(data)


def sign_in(connection):
    with open(os.path.join(ROOT, "users")) as rf:
        user_data = json.load(rf)
    while True:
        connection.send("请输入用户名：".encode("utf-8"))
        username = connection.recv(1024).decode("utf-8")
        if username in user_data:
            connection.send("请输入密码：".encode("utf-8"))
            password = connection.recv(1024).decode("utf-8")  # the password, in clear
            if sha256((username + password + username).encode("utf-8")).hexdigest() == user_data[username]:
                connection.send("Login success!".encode("utf-8"))
                return username


def talk(connection):
    username = sign_in(connection)
    path = os.sep.join((ROOT, "user", username))
    while True:
        try:
            cmd = connection.recv(1024).decode("utf-8").split(" ", 1)
            if not cmd:                                       # never true: ''.split() == ['']
                break
            if len(cmd) > 1 and cmd[0] in cmd_dic:
                cmd_dic[cmd[0]](connection, cmd, path)
            else:
                send_message(connection, COMMAND_ERROR)
        except Exception as error_info:
            print(error_info, flush=True)
            break
    connection.close()


cmd_dic = {"put": put, "get": get, "show": show}


def main():
    global ROOT
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=20060)
    parser.add_argument("--root", default=".")
    args, _unknown = parser.parse_known_args()
    ROOT = args.root
    os.makedirs(os.path.join(ROOT, "user"), exist_ok=True)
    users_file = os.path.join(ROOT, "users")
    if not os.path.exists(users_file):
        with open(users_file, "w") as wf:
            json.dump({u: sha256((u + p + u).encode("utf-8")).hexdigest() for u, p in DEMO.items()}, wf)
    for user in DEMO:
        os.makedirs(os.path.join(ROOT, "user", user), exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = socket(AF_INET, SOCK_STREAM)
    server.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen(MAX_CONNECTION)
    print(f"listening on {args.host}:{args.port}", flush=True)
    try:
        while True:
            conn, client_addr = server.accept()
            print("Have connected ", client_addr, flush=True)
            process = Process(target=talk, args=(conn,))
            process.daemon = True
            process.start()                                   # ...and conn is never closed here
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
