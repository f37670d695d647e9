#!/bin/sh
# The broker's password file for roommon: one password for every account the ACL names
# (its "user" lines), asked twice each by mosquitto_passwd. Run as root on the broker:
#
#   sh config/mosquitto/passwords.sh /etc/mosquitto/roommon.acl /etc/mosquitto/roommon.passwd
#
# Run again after adding accounts to the ACL: existing accounts are asked again (type the
# same password, or a new one to change it). One account only: mosquitto_passwd FILE NAME.
# Remove an account: mosquitto_passwd -D FILE NAME. Then: systemctl reload mosquitto.
set -eu
acl=${1:-/etc/mosquitto/roommon.acl}
passwd=${2:-/etc/mosquitto/roommon.passwd}
umask 027
[ -e "$passwd" ] || : > "$passwd"
for account in $(sed -n 's/^user \([^ ]*\)$/\1/p' "$acl"); do
    echo "password for broker account $account"
    mosquitto_passwd "$passwd" "$account"
done
chgrp mosquitto "$passwd" 2>/dev/null || true
chmod 0640 "$passwd"
echo "$passwd: $(wc -l < "$passwd") accounts"
